/**
 * extractFactsFromFile (what a parse worker runs on a big message's spool file: the bytes are
 * dropped before postal-mime runs) gives exactly the facts extractFacts gives on the same
 * bytes: every real-world corpus message, a 20 MB message whose leaf parts are cut, and an
 * unreadable file (parseError, never a throw). Skips the corpus part when it is absent.
 */
import { expect, test } from "bun:test";
import { existsSync, readdirSync, statSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { extractFacts, extractFactsFromFile } from "../../src/parse/extract.ts";
import type { Envelope } from "../../src/types.ts";

const CORPUS = "/work/shared/corpus";
const ENVELOPE: Envelope = { mailFrom: "a@sender.example", rcptTo: ["b@company.com"], clientIp: "192.0.2.1", helo: "client.example", tls: false };

function emlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return emlFiles(path);
    return name.endsWith(".eml") ? [path] : [];
  });
}

async function expectSameFacts(path: string): Promise<void> {
  const fromBytes = await extractFacts(new Uint8Array(await readFile(path)), ENVELOPE);
  let dropped = 0;
  const fromFile = await extractFactsFromFile(path, ENVELOPE, { onRawDropped: () => dropped++ });
  expect(dropped).toBe(1);
  expect({ path, ...fromFile, headers: [...fromFile.headers] }).toEqual({ path, ...fromBytes, headers: [...fromBytes.headers] });
}

test("same facts as extractFacts for every corpus message", async () => {
  if (!existsSync(CORPUS)) {
    console.log(`skipped: no corpus at ${CORPUS}`);
    return;
  }
  const files = emlFiles(CORPUS);
  expect(files.length).toBeGreaterThan(100);
  for (const path of files) await expectSameFacts(path);
}, 120_000);

test("same facts for a 20 MB message with cut leaf parts; an unreadable file gives parseError", async () => {
  const dir = await mkdtemp(join(tmpdir(), "mailgw-extract-file-"));
  try {
    const line = "The quick brown fox jumps over the lazy dog 0123456789 invoice-4711\r\n";
    const b64 = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n";
    const raw = [
      "From: Big <big@sender.example>\r\nTo: b@company.com\r\nSubject: big one\r\nMIME-Version: 1.0\r\n",
      'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n',
      line.repeat(150_000),
      '--b1\r\nContent-Type: application/pdf; name="report.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n',
      b64.repeat(140_000),
      "--b1--\r\n",
    ].join("");
    const path = join(dir, "big.eml");
    await writeFile(path, raw);
    expect(raw.length).toBeGreaterThan(20 * 1024 * 1024);
    await expectSameFacts(path);
    const facts = await extractFactsFromFile(path, ENVELOPE);
    expect(facts.attachments).toEqual(["report.pdf"]);
    expect(facts.body).toStartWith("The quick brown fox");
    const missing = await extractFactsFromFile(join(dir, "gone.eml"), ENVELOPE);
    expect(missing.parseError).toContain("message not parsed");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);
