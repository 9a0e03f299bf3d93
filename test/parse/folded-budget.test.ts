/**
 * The folded reading's MIME parse (src/parse/header-readings.ts) has bytes of its own: its
 * body is the message's tail, which the first reading's parse is charged for whole. On what
 * that left, an `.exe` past 32 MB - the first reading's body into the folded reading's body of
 * a 24 MB message was never inspected, though postal-mime and Thunderbird show it.
 */
import { expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { extractFacts, extractFactsFromFile } from "../../src/parse/extract.ts";
import type { Envelope } from "../../src/types.ts";

const ENVELOPE: Envelope = { mailFrom: "a@b.example", rcptTo: ["v@company.com"], clientIp: "192.0.2.1", helo: "mx.b.example", tls: false };

test("an attachment 24 MB into the folded reading's multipart is seen (the first reading: text/plain)", async () => {
  const filler = `${"a".repeat(99)}\r\n`.repeat(240_000);
  const raw = Buffer.from(
    "From: a@b.example\r\nSubject: hi\r\n \r\nX\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
      `--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=data.bin\r\n\r\n${filler}` +
      "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=evil.exe\r\n\r\nTVqQ\r\n--b--\r\n",
  );
  expect((await extractFacts(raw, ENVELOPE)).attachments).toEqual(["data.bin", "evil.exe"]);
  const dir = await mkdtemp(join(tmpdir(), "folded-budget-"));
  try {
    await writeFile(join(dir, "m.eml"), raw);
    expect((await extractFactsFromFile(join(dir, "m.eml"), ENVELOPE)).attachments).toEqual(["data.bin", "evil.exe"]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
