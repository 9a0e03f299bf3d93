/**
 * Hostile input against the real `mailgw serve` (from source), as a sender or a client of the
 * stats server would send it:
 * - a Host header that is no host name (`[evil.example]`, `%`) is the client's mistake: 400, and
 *   no ERROR line in the log per request (it used to be a 500 logged as "http server error");
 * - a rule regex that backtracks catastrophically (`^(a+)+$` on attachment names) against a
 *   message with 40 such names: classified within the regex budget, the gateway (another
 *   SMTP session, /healthz) stays responsive, and the log names the rule (it used to stall the
 *   whole process about a second per name);
 * - a webhook receiver whose error reply carries terminal escapes or a bidi override: `mailgw
 *   queue list` shows them as `?`, not as bytes that drive the admin's terminal or reverse the line
 *   (`--json`: as \uXXXX escapes);
 * - LOG_FORMAT=text (what an admin reads in a TTY or journalctl): a sender address with a bidi
 *   override is escaped, and the refused recipients are one quoted value;
 * - a message whose first line starts with a space continued mailgw's own Received header (a
 *   forged `by` and date inside the trace line rules and downstream filters trust): an empty
 *   line now ends our header first, as Postfix's smtpd does;
 * - bare CRs a relay-bound copy turns into line breaks (a `Subject:` line that goes on with
 *   `<CR>Content-Type: multipart/mixed…`, parts split by bare CRs) hid an .exe attachment from
 *   an attachment rule, while the relay got it as a plain attachment: the rules now read the
 *   message with CRLF line ends, as it is forwarded, small (in memory) or big (spool file);
 * - an attachment name of 200,000 spaces before `x.exe` held a parse worker past its 10 s timeout
 *   (the trailing-space trim was a regex retried at every space), and the message was then
 *   classified without its content: an attachment rule's reject became the default's archive;
 * - header fields of 63,000 spaces (folded lines) before one letter: the value's trim was a regex
 *   retried at every space, 1.4 s a field; 15 of them stalled the event loop 20 s (header-only
 *   rules) or ran the parse worker past its timeout, and a subject rule's reject became an archive;
 * - a text part that used up a parse limit (its `a=b` lines counted as base64 padding, or a million
 *   lines) cut the header of a later attached message: the .exe inside it reached no rule;
 * - a command line over 16 KB (2 MB here) ended the session with 421 and lost its transaction:
 *   now answered 500 5.5.2 and skipped without being buffered, and the session goes on;
 * - LOG_FORMAT=json (the default off a TTY, read with journalctl or docker logs): a bidi
 *   override in the HELO name and the sender is written as \u202e, not as the raw character
 *   that reversed the rest of the line on the admin's terminal.
 */
import { describe, expect, test } from "bun:test";
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RawClient, greet, sendMail, sendOne, simpleMessage } from "../smtp/helpers.ts";
import { RULES_YAML, archivedCopy, mailgwQueue, queueList, startServe, statusWithHost, until, serveEachTest } from "../smtp/serve-process.ts";
import { startServeRawLog } from "../smtp/serve-raw-log.ts";

const serve = serveEachTest();


describe("mailgw serve against hostile input", () => {
  test("a Host header that is no host name gets 400, not a 500 with an ERROR log line", async () => {
    const s = await serve();
    for (const host of ["[evil.example]", "%", "[::1"]) {
      expect(await statusWithHost(s.httpUrl, "/healthz", host)).toBe(400);
      expect(await statusWithHost(s.httpUrl, "/stats", host)).toBe(400);
    }
    // The server goes on answering well-formed requests.
    expect(await statusWithHost(s.httpUrl, "/healthz", "localhost")).toBe(200);
    expect(s.logs.filter((l) => l.level === "error")).toEqual([]);
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("a catastrophic rule regex against hostile attachment names neither stalls the gateway nor other sessions", async () => {
    const rules = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: slow-names
    priority: 10
    action: reject
    conditions:
      - { field: attachment, operator: regex, value: '^(a+)+$' }
`;
    const s = await serve({}, rules);
    const boundary = "b0undary";
    const parts = Array.from({ length: 40 }, (_, i) =>
      `--${boundary}\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="${"a".repeat(40)}${i}!"\r\n\r\nx\r\n`);
    const hostile = `From: a@sender.example\r\nTo: b@company.com\r\nSubject: names\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="${boundary}"\r\n\r\n${parts.join("")}--${boundary}--\r\n`;

    const slow = await RawClient.connect(s.smtpPort);
    await greet(slow);
    const started = Date.now();
    const hostileReply = sendMail(slow, "b@company.com", hostile).then((r) => ({ reply: r, ms: Date.now() - started }));
    await Bun.sleep(300);
    // Meanwhile: the health check and an ordinary session answer promptly.
    const healthStarted = Date.now();
    expect((await fetch(new URL("/healthz", s.httpUrl))).status).toBe(200);
    const healthMs = Date.now() - healthStarted;
    const other = await RawClient.connect(s.smtpPort);
    await greet(other);
    const otherStarted = Date.now();
    expect(await sendMail(other, "c@company.com", simpleMessage("ordinary"))).toMatch(/^250 2\.0\.0 Queued as /);
    const otherMs = Date.now() - otherStarted;
    other.end();

    const { reply, ms } = await hostileReply;
    slow.end();
    // Without the budget: ~1 s per name, 40 s in all, every other session and /healthz waiting.
    expect(reply).toMatch(/^250 2\.0\.0 Queued as /);
    expect(ms).toBeLessThan(10_000);
    expect(healthMs).toBeLessThan(5000);
    expect(otherMs).toBeLessThan(5000);
    const warned = await s.waitForLog((l) => typeof l.msg === "string" && l.msg.startsWith("rule regexes used up"));
    expect(warned.rules).toEqual(["slow-names"]);
    expect(warned.decision).toBe("archive");
    // Lint's warning about the regex is logged at start too.
    expect(s.logs.some((l) => l.msg === "rules warning" && l.code === "slow-regex")).toBe(true);
    expect(await s.stop()).toBe(0);
  }, 120_000);

  test("an attachment name of 200,000 spaces (folded lines) before x.exe is rejected at once, not let through after the parse timeout", async () => {
    const rules = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: no-exe, priority: 10, action: reject, conditions: [{ field: attachment, operator: ends_with, value: .exe }] }
`;
    const s = await serve({}, rules);
    const name = `a${`\r\n${" ".repeat(900)}`.repeat(222)}x.exe`;
    const message = `From: a@sender.example\r\nTo: b@company.com\r\nSubject: spaces\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="p"\r\n\r\n` +
      `--p\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="${name}"\r\n\r\nTVo=\r\n--p--\r\n`;
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    const started = Date.now();
    // Trimmed by a regex that retried at every space: the parse worker hit its 10 s timeout, and the
    // message was classified without its content (the default: archived, the .exe let through).
    expect(await sendMail(c, "b@company.com", message)).toBe("550 5.7.1 Message rejected");
    expect(Date.now() - started).toBeLessThan(5000);
    c.end();
    expect(await s.stop()).toBe(0);
  }, 60_000);

  test("a text part that uses up a parse limit (100,001 `a=b` lines, 1,000,001 bare newlines) does not hide the .exe in a later attached message", async () => {
    const rules = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: no-exe, priority: 10, action: reject, conditions: [{ field: attachment, operator: ends_with, value: .exe }] }
`;
    const s = await serve({}, rules);
    const inner = `From: z@example.org\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary="in"\r\n\r\n--in\r\nContent-Type: text/plain\r\n\r\nhello\r\n` +
      `--in\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="x.exe"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--in--\r\n`;
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    // The '=' counted as base64 padding in a plain text part, the lines of the text part used up the
    // line budget: either way the attached message's header was cut, its parts never reached the
    // rules, and the default archived the .exe.
    for (const text of ["a=b\r\n".repeat(100_001), "\n".repeat(1_000_001)]) {
      const message = `From: a@sender.example\r\nTo: b@company.com\r\nSubject: limits\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="out"\r\n\r\n` +
        `--out\r\nContent-Type: text/plain\r\n\r\n${text}\r\n--out\r\nContent-Type: message/rfc822\r\n\r\n${inner}\r\n--out--\r\n`;
      expect(await sendMail(c, "b@company.com", message)).toBe("550 5.7.1 Message rejected");
    }
    c.end();
    expect(await s.stop()).toBe(0);
  }, 60_000);

  test("header fields of 63,000 spaces before one letter: a subject rule still rejects at once, other sessions go on", async () => {
    const s = await serve();
    const padding = Array.from({ length: 15 }, (_, i) => `X-Pad-${i}: a${`\r\n${" ".repeat(900)}`.repeat(70)}b\r\n`).join("");
    const message = `From: a@sender.example\r\nTo: b@company.com\r\nSubject: [SPAM] buy now\r\n${padding}\r\nhello\r\n`;
    // Header-only rules: parsed on the event loop. With an attachment rule too: in a parse worker.
    const withAttachmentRule = `${RULES_YAML}  - { name: no-exe, priority: 10, action: reject, conditions: [{ field: attachment, operator: ends_with, value: .exe }] }\n`;
    for (const rules of [RULES_YAML, withAttachmentRule]) {
      if (rules !== RULES_YAML) {
        writeFileSync(join(s.dir, "rules.yaml.new"), rules);
        renameSync(join(s.dir, "rules.yaml.new"), join(s.dir, "rules.yaml"));
        await s.waitForLog((l) => l.msg === "rules reloaded");
      }
      const c = await RawClient.connect(s.smtpPort);
      await greet(c);
      const started = Date.now();
      const hostileReply = sendMail(c, "b@company.com", message).then((reply) => ({ reply, ms: Date.now() - started }));
      await Bun.sleep(300);
      const otherStarted = Date.now();
      await sendOne(s.smtpPort, "ordinary");
      const otherMs = Date.now() - otherStarted;
      // Trimmed by a regex: 20 s on the event loop, or the worker's 10 s timeout and then the default's archive.
      const { reply, ms } = await hostileReply;
      c.end();
      expect(reply).toBe("550 5.7.1 Message rejected as spam");
      expect(ms).toBeLessThan(5000);
      expect(otherMs).toBeLessThan(5000);
    }
    expect(await s.stop()).toBe(0);
  }, 90_000);

  test("1,001 padding header fields before the Subject do not hide it from a subject rule", async () => {
    const s = await serve();
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    const padding = Array.from({ length: 1001 }, (_, i) => `X-Pad-${i}: x`).join("\r\n");
    const message = `${padding}\r\nFrom: a@sender.example\r\nTo: b@company.com\r\nSubject: [SPAM] buy now\r\n\r\nhello\r\n`;
    expect(await sendMail(c, "b@company.com", message)).toBe("550 5.7.1 Message rejected as spam");
    c.end();
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("queue list shows a webhook reply's terminal escapes and bidi overrides as '?'", async () => {
    const receiver = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: () => new Response("\x1b]0;owned\x07\x1b[2Jrefused\x1b[31m \u202etxt.exe\u200b", { status: 400 }),
    });
    try {
      const rules = `domains: [company.com]
default: { action: webhook, url: "http://127.0.0.1:${receiver.port}/hook" }
rules: []
`;
      const s = await serve({}, rules);
      const c = await RawClient.connect(s.smtpPort);
      await greet(c);
      expect(await sendMail(c)).toMatch(/^250 2\.0\.0 Queued as /);
      c.end();
      await until("webhook failed", async () => (await queueList(s.dir, "failed")).length === 1, 15_000);
      const listed = await mailgwQueue(s.dir, "list", "--state", "failed");
      expect(listed.code).toBe(0);
      expect(listed.stdout).toContain("HTTP 400 Bad Request: ?]0;owned??[2Jrefused?[31m ?txt.exe?");
      expect(listed.stdout).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f\u202e\u200b]/);
      // --json too: the same text, escaped as \uXXXX, decoding to the reply as recorded.
      const json = await mailgwQueue(s.dir, "list", "--state", "failed", "--json");
      expect(json.code).toBe(0);
      expect(json.stdout).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e\u200b]/);
      expect(JSON.parse(json.stdout)[0].lastError).toBe("HTTP 400 Bad Request: \x1b]0;owned\x07\x1b[2Jrefused\x1b[31m \u202etxt.exe\u200b");
      expect(await s.stop()).toBe(0);
    } finally {
      receiver.stop(true);
    }
  }, 60_000);

  test("text log: a bidi override in a sender is escaped and refused recipients are one quoted value", async () => {
    const s = await startServeRawLog("text");
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    expect(await c.cmd("MAIL FROM:<\u202egro.live@evil.example> SMTPUTF8")).toStartWith("250");
    expect(await c.cmd("RCPT TO:<x=y@other.example>")).toStartWith("550");
    expect(await c.cmd("RCPT TO:<b@company.com>")).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    expect(await c.cmd(`${simpleMessage("bidi")}\r\n.`)).toMatch(/^250 2\.0\.0 Queued as /);
    await c.cmd("QUIT");
    c.end();
    const line = await s.waitForLine((l) => l.includes(" smtp session ") && l.includes("refused="));
    expect(line).toContain(' from="\\u202egro.live@evil.example" ');
    expect(line).toContain(' refused="x=y@other.example (550)" ');
    expect(line).not.toContain("\u202e");
    s.proc.kill("SIGTERM");
    expect(await s.proc.exited).toBe(0);
  }, 30_000);

  test("json log: a bidi override in the HELO name and the sender is escaped, and decodes to the same value", async () => {
    const s = await startServeRawLog("json");
    const c = await RawClient.connect(s.smtpPort);
    expect(await greet(c, "\u202eevil.example")).toStartWith("250");
    expect(await c.cmd("MAIL FROM:<\u202egro.live@evil.example> SMTPUTF8")).toStartWith("250");
    expect(await c.cmd("RCPT TO:<b@company.com>")).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    expect(await c.cmd(`${simpleMessage("bidi")}\r\n.`)).toMatch(/^250 2\.0\.0 Queued as /);
    await c.cmd("QUIT");
    c.end();
    const line = await s.waitForLine((l) => l.includes('"msg":"smtp session"') && l.includes('"decision"'));
    expect(line).not.toContain("\u202e");
    expect(line).toContain('"helo":"\\u202eevil.example"');
    expect(JSON.parse(line)).toMatchObject({ helo: "\u202eevil.example", from: "\u202egro.live@evil.example" });
    s.proc.kill("SIGTERM");
    expect(await s.proc.exited).toBe(0);
  }, 30_000);

  test("a command line of 2 MB: 500 5.5.2 without buffering it, and the session's message is still accepted and archived", async () => {
    const s = await serve({});
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
    for (let i = 0; i < 32; i++) c.write(`${i === 0 ? "RCPT TO:<" : ""}${"x".repeat(65_536)}`);
    c.write("@company.com>\r\n");
    // It used to be 421 "Command line too long" and a closed connection, the transaction lost.
    expect(await c.reply()).toBe("500 5.5.2 Error: line too long");
    expect(await c.cmd("RCPT TO:<b@company.com>")).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    c.write("Subject: after a long line\r\n\r\nbody\r\n.\r\n");
    const reply = await c.reply();
    expect(reply).toMatch(/^250 2\.0\.0 Queued as /);
    expect(await c.cmd("QUIT")).toStartWith("221");
    const stored = (await archivedCopy(s.dir, reply.split(" ").pop() ?? ""))?.toString("latin1") ?? "";
    expect(stored).toContain("Subject: after a long line");
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("a first line starting with a space is not folded into mailgw's Received header", async () => {
    const rules = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: trusted-hop
    priority: 10
    action: reject
    conditions:
      - { field: "header:received", operator: contains, value: "by trusted.example" }
`;
    const s = await serve({}, rules);
    const forged = " (internal) by trusted.example with ESMTPS id x\r\n\tfor <b@company.com>; Mon, 1 Jan 2001 00:00:00 +0000\r\n";
    for (const lead of [forged, `\t${forged.slice(1)}`]) {
      const c = await RawClient.connect(s.smtpPort);
      await greet(c);
      const reply = await sendMail(c, "b@company.com", `${lead}${simpleMessage("folded")}`);
      c.end();
      // Folded in, the forged hop was part of our trusted Received line and met the rule.
      expect(reply).toMatch(/^250 2\.0\.0 Queued as /);
      const stored = (await archivedCopy(s.dir, reply.split(" ").pop() ?? ""))?.toString("latin1") ?? "";
      expect(stored).toMatch(/^Received: from client\.example \(\[127\.0\.0\.1\]\)\r\n(\t[^\r\n]*\r\n){3}\r\n[ \t]\(internal\) by trusted\.example/);
      expect(stored.endsWith(`${lead}${simpleMessage("folded")}`)).toBe(true);
    }
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("bare CRs that the forwarded copy turns into line breaks do not hide an attachment from the rules", async () => {
    const rules = `domains: [company.com]
default: { action: forward, forward_to: [inbox@other.example] }
rules:
  - name: no-exe
    priority: 10
    action: reject
    conditions:
      - { field: attachment, operator: ends_with, value: .exe }
`;
    const s = await serve({}, rules);
    const part = (pad: string, nl: string) =>
      `--b${nl}Content-Type: text/plain${nl}${nl}${pad}hello${nl}--b${nl}Content-Type: application/octet-stream${nl}` +
      `Content-Disposition: attachment; filename="evil.exe"${nl}Content-Transfer-Encoding: base64${nl}${nl}TVo=${nl}--b--${nl}`;
    const inSubject = (pad: string) =>
      `From: a@sender.example\r\nTo: b@company.com\r\nSubject: hi\rMIME-Version: 1.0\rContent-Type: multipart/mixed; boundary="b"\r\n\r\n${part(pad, "\r\n")}`;
    const inBody = (pad: string) =>
      `From: a@sender.example\r\nTo: b@company.com\r\nSubject: hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\nx\r${part(pad, "\r")}`;
    // 100 KB of text: past the 64 KB a message is kept in memory for, so the parse reads the spool file.
    const big = `${"y".repeat(76)}\r\n`.repeat(1300);
    for (const message of [inSubject(""), inBody(""), inSubject(big), inBody(big)]) {
      const c = await RawClient.connect(s.smtpPort);
      await greet(c);
      expect(await sendMail(c, "b@company.com", message)).toBe("550 5.7.1 Message rejected");
      c.end();
    }
    expect(await s.stop()).toBe(0);
  }, 60_000);
});
