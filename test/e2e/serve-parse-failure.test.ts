/**
 * A parse worker that fails on a message (it misses its 10 s, or dies), against the compiled
 * `mailgw serve`. The message was classified on its envelope alone: every subject, from, header,
 * body and attachment rule was skipped, so a message with an .exe and a "[SPAM]" subject got
 * `250` and the default action (archived here; forwarded on a gateway whose default forwards).
 * Now it gets `451 4.3.0`, as Postfix answers when a content filter fails, so the sender tries
 * again; nothing of it is kept; the log line names the message and says so; the next message is
 * parsed by the worker put in its place and its rules apply.
 * The failure is injected from outside the product: a preload (BUN_OPTIONS, which the compiled
 * executable honours) that keeps the parse request of a message holding HANG-THE-PARSER from
 * reaching its worker.
 */
import { afterAll, expect, test } from "bun:test";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PARSE_TIMEOUT_MS } from "../../src/parse/parse-pool.ts";
import { greet, RawClient, sendMail } from "../smtp/helpers.ts";
import { cleanupBinary, serveDir, startServe } from "../smtp/serve-process.ts";

afterAll(() => cleanupBinary(), 60_000);

const HANG_PRELOAD = `const post = Worker.prototype.postMessage;
Worker.prototype.postMessage = function (data, ...rest) {
  let text = "";
  if (data?.kind === "parse" && data.bytes instanceof ArrayBuffer) text = Buffer.from(data.bytes).toString("latin1");
  else if (data?.kind === "parse-file") text = require("node:fs").readFileSync(data.path, "latin1");
  if (text.includes("HANG-THE-PARSER")) return;
  return post.call(this, data, ...rest);
};
`;

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: no-exe, priority: 10, action: reject, conditions: [{ field: attachment, operator: ends_with, value: .exe }] }
  - { name: spam, priority: 5, action: reject, conditions: [{ field: subject, operator: contains, value: "[SPAM]" }] }
`;

function withExe(subject: string): string {
  return `From: a@sender.example\r\nTo: b@company.com\r\nSubject: ${subject}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n` +
    `--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/octet-stream; name="x.exe"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b--\r\n`;
}

/** Files below `dir`, recursively. */
function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name);
}

test("a parse worker that times out on a message: 451 (the sender retries), nothing kept, said in the log; the next message's rules apply", async () => {
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  writeFileSync(join(dir, "hang-preload.js"), HANG_PRELOAD);
  const s = await startServe("binary", dir, { BUN_OPTIONS: `--preload ${join(dir, "hang-preload.js")}` });
  try {
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
    expect(await c.cmd("RCPT TO:<b@company.com>")).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    c.write(`${withExe("[SPAM] HANG-THE-PARSER")}.\r\n`);
    // Was: 250 2.0.0 Queued as …, archived by the default with its .exe.
    expect(await c.reply(PARSE_TIMEOUT_MS + 10_000)).toBe("451 4.3.0 Temporary local problem, please try again later");
    const failed = await s.waitForLog((l) => l.level === "error" && typeof l.msg === "string" && l.msg.startsWith("parsing the message failed"));
    expect(failed.msg).toBe("parsing the message failed: answered 451 (the sender retries later), no rule applied");
    expect(failed.id).toBeString();
    expect(failed.error).toBe(`parse worker took longer than ${PARSE_TIMEOUT_MS} ms`);
    expect(s.logs.some((l) => l.msg === "message stored")).toBe(false);
    // The same session goes on, with a worker in the place of the stuck one.
    expect(await sendMail(c, "b@company.com", withExe("invoice"))).toBe("550 5.7.1 Message rejected");
    c.end();
    expect(files(join(s.dir, "data", "spool")).filter((f) => !f.startsWith("."))).toEqual([]);
    expect(files(join(s.dir, "data", "archive"))).toEqual([]);
  } finally {
    expect(await s.stop()).toBe(0);
  }
}, 60_000);
