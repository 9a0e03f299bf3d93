/**
 * Ingress cases against the real `mailgw serve` (from source) that the in-process SMTP tests
 * cover with a stand-in sink:
 * - listening on `::`, an IPv4 client arrives as an IPv4-mapped address and is matched against
 *   IPv4 ranges in SMTP_ALLOWED_IPS; IPv6 loopback is refused by the same IPv4-only list;
 * - the rate limit counts the client address a PROXY header carries, not the proxy's;
 * - an edit of rules.yaml seen by the file watcher (no SIGHUP) changes the action for the very
 *   next message of an open session;
 * - commands ended by a bare LF are understood, and a bare-LF dot does not end DATA;
 * - broken MIME is accepted and archived byte for byte;
 * - the stats server (loopback, no STATS_TOKEN) refuses a foreign Host name (DNS rebinding),
 *   except on /healthz;
 * - MAIL/RCPT parameters of extensions not offered get 555 and refused recipients are logged,
 *   while the session and its message go on;
 * - with DATABASE_URL unset, the database is in DATA_DIR.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RawClient, greet, sendMail, simpleMessage, terminated } from "../smtp/helpers.ts";
import { Database } from "bun:sqlite";
import { archivedCopy, RULES_YAML, serveDir, statusWithHost, until, type ServeProcess, serveEachTest } from "../smtp/serve-process.ts";

const serve = serveEachTest();

async function archived(s: ServeProcess, id: string): Promise<Buffer> {
  let bytes: Buffer | null = null;
  await until(`${id} archived`, async () => (bytes = await archivedCopy(s.dir, id)) !== null, 5000);
  return bytes ?? Buffer.alloc(0);
}

describe("mailgw serve ingress edges", () => {
  test("on `::`: an IPv4 client matches IPv4 ranges (IPv4-mapped); ::1 is refused by them", async () => {
    const s = await serve({ SMTP_HOST: "::", SMTP_ALLOWED_IPS: "127.0.0.0/8" });
    const v4 = await RawClient.connect(s.smtpPort, "127.0.0.1");
    expect(await greet(v4)).toStartWith("250");
    expect(await sendMail(v4)).toMatch(/^250 2\.0\.0 Queued as /);
    v4.end();
    const v6 = await RawClient.connect(s.smtpPort, "::1");
    expect(await v6.reply()).toMatch(/^554 5\.7\.1 /);
    v6.end();
    await s.waitForLog((l) => l.msg === "smtp session" && l.client === "127.0.0.1" && typeof l.id === "string");
    expect(await s.stop()).toBe(0);
  }, 30_000);

  // The line used to carry the first message's id beside the last message's sender and decision.
  test("a session with several messages: its line lists each with its own id, envelope and decision", async () => {
    const s = await serve({});
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    const first = await sendMail(c, "b@company.com", simpleMessage("quote please"));
    expect(first).toMatch(/^250 2\.0\.0 Queued as /);
    expect(await c.cmd("MAIL FROM:<second@sender.example>")).toStartWith("250");
    expect(await c.cmd("RCPT TO:<c@company.com>")).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    expect(await c.cmd(`${simpleMessage("[SPAM] cheap")}\r\n.`)).toMatch(/^550 5\.7\.1 /);
    await c.cmd("QUIT");
    const line = await s.waitForLog((l) => l.msg === "smtp session" && Array.isArray(l.messages));
    const messages = line.messages as Record<string, unknown>[];
    expect(messages).toHaveLength(2);
    expect(messages[0]).toMatchObject({ id: first.split(" ").pop(), from: "a@sender.example", recipients: ["b@company.com"], decision: "archive", reply: first });
    expect(messages[1]).toMatchObject({ from: "second@sender.example", recipients: ["c@company.com"], decision: "reject", rule: "reject-spam", category: "spam" });
    expect(String(messages[1]!.reply)).toStartWith("550 5.7.1");
    // The top-level fields, id included, are the last message's.
    expect(line).toMatchObject({ from: "second@sender.example", decision: "reject", id: messages[1]!.id });
    expect(messages[1]!.id).not.toBe(messages[0]!.id);
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("IDN in A-label form needs no SMTPUTF8; bad UTF-8 gets 500; a quoted local part in From: meets the rule for the plain address", async () => {
    const rules = `domains: [company.com, münchen.de]
default: { action: archive, category: default }
rules:
  - name: spoofed-boss
    priority: 10
    category: spoof
    action: reject
    conditions:
      - { field: from, operator: equals, value: boss@company.com }
`;
    const s = await serve({}, rules);
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    expect(await c.cmd("MAIL FROM:<a@xn--mnchen-3ya.de>")).toStartWith("250 2.1.0");
    expect(await c.cmd("RCPT TO:<v@xn--mnchen-3ya.de>")).toStartWith("250 2.1.5");
    expect(await c.cmd("DATA")).toStartWith("354");
    const accepted = await c.cmd(`${simpleMessage("idn")}\r\n.`);
    expect(accepted).toMatch(/^250 2\.0\.0 Queued as /);
    c.write(Buffer.concat([Buffer.from("MAIL FROM:<", "latin1"), Buffer.from([0xff]), Buffer.from("@b.example> SMTPUTF8\r\n", "latin1")]));
    expect(await c.reply()).toBe("500 5.5.2 Error: bad UTF-8 syntax");
    expect(await c.cmd("MAIL FROM:<x@sender.example>")).toStartWith("250");
    expect(await c.cmd("RCPT TO:<b@company.com>")).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    expect(await c.cmd('From: "boss"@company.com\r\nTo: b@company.com\r\nSubject: pay this\r\n\r\nnow\r\n.')).toMatch(/^550 5\.7\.1 /);
    await c.cmd("QUIT");
    const id = accepted.split(" ").pop() ?? "";
    const db = new Database(join(s.dir, "data", "mail-gateway.db"), { readonly: true });
    try {
      const row = db.query<{ mail_from: string; recipients: string }, [string]>("SELECT mail_from, recipients FROM messages WHERE id = ?").get(id);
      expect(row).toEqual({ mail_from: "a@xn--mnchen-3ya.de", recipients: '["v@xn--mnchen-3ya.de"]' });
    } finally {
      db.close();
    }
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("the rate limit counts the address a PROXY header carries, not the proxy's", async () => {
    const s = await serve({ SMTP_PROXY_PROTOCOL: "true", RATE_LIMIT_MAX: "2" });
    const from = async (client: string) => {
      const c = await RawClient.connect(s.smtpPort, "127.0.0.1", `PROXY TCP4 ${client} 10.0.0.1 51000 25\r\n`);
      await greet(c);
      const replies = [await sendMail(c), await sendMail(c), await c.cmd("MAIL FROM:<a@sender.example>")];
      c.end();
      return replies;
    };
    const first = await from("203.0.113.5");
    expect(first.map((r) => r.slice(0, 9))).toEqual(["250 2.0.0", "250 2.0.0", "451 4.7.1"]);
    const other = await from("203.0.113.6"); // same proxy (127.0.0.1), another client
    expect(other.map((r) => r.slice(0, 9))).toEqual(["250 2.0.0", "250 2.0.0", "451 4.7.1"]);
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("PROXY v1 with an IPv6 zone id is refused as malformed; a plain TCP6 header still works and is the client in the archive", async () => {
    const s = await serve({ SMTP_PROXY_PROTOCOL: "true" });
    const zoned = await RawClient.connect(s.smtpPort, "127.0.0.1", "PROXY TCP6 fe80::1%eth0 ::1 51000 25\r\n");
    expect(await zoned.reply(2000)).toMatch(/^421 4\.7\.0 .*PROXY/);
    expect(await zoned.waitClose(3000)).toBe(true);
    const plain = await RawClient.connect(s.smtpPort, "127.0.0.1", "PROXY TCP6 fe80::1 ::1 51000 25\r\n");
    await greet(plain);
    const reply = await sendMail(plain);
    expect(reply).toStartWith("250 2.0.0");
    plain.end();
    const stored = (await archived(s, reply.split(" ").pop() ?? "")).toString("latin1");
    expect(stored).toContain("([IPv6:fe80::1])");
    expect(stored).not.toContain("%");
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("PROXY: a health check (v2 LOCAL) that SMTP_ALLOWED_IPS refuses gets 554 as a debug line; clients are as before", async () => {
    const s = await serve({ SMTP_PROXY_PROTOCOL: "true", SMTP_ALLOWED_IPS: "203.0.113.0/24", LOG_LEVEL: "debug" });
    // PROXY v2 LOCAL (what HAProxy's send-proxy-v2 checks send): no address, the proxy's own.
    const local = Buffer.concat([Buffer.from("0d0a0d0a000d0a515549540a", "hex"), Buffer.from([0x20, 0x00, 0x00, 0x00])]);
    for (let i = 0; i < 3; i++) {
      const check = await RawClient.connect(s.smtpPort, "127.0.0.1", local);
      expect(await check.reply()).toStartWith("554 5.7.1");
      check.end();
    }
    const outsider = await RawClient.connect(s.smtpPort, "127.0.0.1", "PROXY TCP4 198.51.100.7 10.0.0.1 51000 25\r\n");
    expect(await outsider.reply()).toStartWith("554 5.7.1");
    outsider.end();
    const insider = await RawClient.connect(s.smtpPort, "127.0.0.1", "PROXY TCP4 203.0.113.5 10.0.0.1 51000 25\r\n");
    await greet(insider);
    expect(await sendMail(insider)).toMatch(/^250 2\.0\.0 /);
    insider.end();
    await s.waitForLog((l) => l.msg === "smtp session" && l.client === "203.0.113.5" && typeof l.id === "string");
    await s.waitForLog((l) => l.msg === "smtp session" && l.client === "198.51.100.7");
    expect(s.logs.filter((l) => l.msg === "proxy's own connection refused (a health check)")).toHaveLength(3);
    expect(s.logs.filter((l) => l.level !== "debug" && l.client === "127.0.0.1")).toEqual([]);
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("an edit seen by the file watcher changes the action for the next message of an open session", async () => {
    const s = await serve();
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    const message = "From: a@sender.example\r\nTo: b@company.com\r\nSubject: weekly report\r\n\r\nHi.\r\n";
    expect(await sendMail(c, "b@company.com", message)).toMatch(/^250 2\.0\.0 /);
    // An editor's save: a new file renamed over the old one.
    const rules = RULES_YAML + `  - { name: no-reports, priority: 50, category: noise, action: reject, reject_message: "No reports here", conditions: [{ field: subject, operator: contains, value: report }] }\n`;
    writeFileSync(join(s.dir, "rules.yaml.new"), rules);
    renameSync(join(s.dir, "rules.yaml.new"), join(s.dir, "rules.yaml"));
    await s.waitForLog((l) => l.msg === "rules reloaded");
    expect(await sendMail(c, "b@company.com", message)).toBe("550 5.7.1 No reports here");
    c.end();
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("the Received header's id is the id of `250 Queued as`, the archive file and the session log", async () => {
    const s = await serve();
    const c = await RawClient.connect(s.smtpPort);
    await greet(c, "trace.example");
    const reply = await sendMail(c);
    expect(reply).toMatch(/^250 2\.0\.0 Queued as [0-9a-z]+$/);
    const id = reply.split(" ").pop() ?? "";
    const stored = (await archived(s, id)).toString("latin1");
    expect(stored).toMatch(new RegExp(`^Received: from trace\\.example \\(\\[127\\.0\\.0\\.1\\]\\)\r\n\\tby mx\\.test \\(mailgw\\) with ESMTP\r\n\\tid ${id} for <b@company\\.com>;\r\n`));
    c.end();
    await s.waitForLog((l) => l.msg === "smtp session" && l.id === id);
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("a quoted local part (<\"ceo\"@…>) cannot slip past a rule on rcpt or mail_from", async () => {
    const rules = RULES_YAML + [
      `  - { name: no-ceo, priority: 60, category: policy, action: reject, reject_message: "Not for the CEO", conditions: [{ field: rcpt, operator: equals, value: ceo@company.com }] }`,
      `  - { name: no-bob, priority: 50, category: policy, action: reject, reject_message: "Not from bob", conditions: [{ field: mail_from, operator: equals, value: bob@sender.example }] }`,
    ].join("\n") + "\n";
    const s = await serve({}, rules);
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    expect(await sendMail(c, '"ceo"@company.com')).toBe("550 5.7.1 Not for the CEO");
    expect(await c.cmd('MAIL FROM:<"bob"@sender.example>')).toStartWith("250");
    expect(await c.cmd("RCPT TO:<b@company.com>")).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    expect(await c.cmd("Subject: hi\r\n\r\nhello\r\n.")).toBe("550 5.7.1 Not from bob");
    // Stored, logged and matched under the one plain form.
    const kept = await sendMail(c, '"b"@company.com');
    expect(kept).toMatch(/^250 2\.0\.0 Queued as /);
    c.end();
    const line = await s.waitForLog((l) => l.msg === "smtp session" && typeof l.id === "string");
    expect(line.recipients).toEqual(["b@company.com"]);
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("quoted-pairs (<\"c\\eo\"@…>, To: <\"c\\eo\"@…>) stand for their characters: no way past a rule on rcpt, mail_from or to", async () => {
    // RFC 5321 §4.1.2 / RFC 5322 §3.2.4: `"c\eo"` is the local part `ceo`, as Postfix reads it.
    const rules = RULES_YAML + [
      `  - { name: no-ceo, priority: 60, category: policy, action: reject, reject_message: "Not for the CEO", conditions: [{ field: rcpt, operator: equals, value: ceo@company.com }] }`,
      `  - { name: no-bob, priority: 50, category: policy, action: reject, reject_message: "Not from bob", conditions: [{ field: mail_from, operator: equals, value: bob@sender.example }] }`,
      `  - { name: no-cfo, priority: 40, category: policy, action: reject, reject_message: "Not to the CFO", conditions: [{ field: to, operator: equals, value: cfo@company.com }] }`,
    ].join("\n") + "\n";
    const s = await serve({}, rules);
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    expect(await sendMail(c, '"c\\eo"@company.com')).toBe("550 5.7.1 Not for the CEO");
    expect(await sendMail(c, '"\\c\\e\\o"@company.com')).toBe("550 5.7.1 Not for the CEO");
    expect(await c.cmd('MAIL FROM:<"b\\ob"@sender.example>')).toStartWith("250");
    expect(await c.cmd("RCPT TO:<b@company.com>")).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    expect(await c.cmd("Subject: hi\r\n\r\nhello\r\n.")).toBe("550 5.7.1 Not from bob");
    expect(await sendMail(c, "b@company.com", 'To: CFO <"c\\fo"@company.com>\r\nSubject: hi\r\n\r\nhello\r\n')).toBe("550 5.7.1 Not to the CFO");
    // A quoted-pair whose character needs the quotes keeps them: `"a\"b"` is not `ab`.
    const kept = await sendMail(c, '"a\\"b"@company.com');
    expect(kept).toMatch(/^250 2\.0\.0 Queued as /);
    c.end();
    const line = await s.waitForLog((l) => l.msg === "smtp session" && typeof l.id === "string");
    expect(line.recipients).toEqual(['"a\\"b"@company.com']);
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("UTF-8 address without SMTPUTF8 → 553, `Received :` counts as a hop, the log line describes the last message", async () => {
    const s = await serve();
    const c = await RawClient.connect(s.smtpPort);
    await greet(c, "edges.example");
    expect(await c.cmd("MAIL FROM:<jörg@sender.example>")).toBe("553 5.6.7 Must declare SMTPUTF8 to send unicode address");
    const hops = "Received : from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n".repeat(51);
    expect(await sendMail(c, "b@company.com", hops + "Subject: loop\r\n\r\nx\r\n")).toMatch(/^554 5\.4\.6 /);
    const queued = await sendMail(c);
    expect(queued).toMatch(/^250 2\.0\.0 Queued as /);
    // A later transaction that never reaches DATA does not relabel the logged message.
    expect(await c.cmd("MAIL FROM:<other@sender.example>")).toStartWith("250");
    expect(await c.cmd("RCPT TO:<x@elsewhere.example>")).toStartWith("550");
    await c.cmd("QUIT");
    const line = await s.waitForLog((l) => l.msg === "smtp session" && l.helo === "edges.example");
    expect({ from: line.from, recipients: line.recipients, id: line.id, decision: line.decision }).toEqual({
      from: "a@sender.example", recipients: ["b@company.com"], id: queued.split(" ").pop(), decision: "archive",
    });
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("RULES_FILE as a symlink: an edit of its target is hot-reloaded (no SIGHUP)", async () => {
    const dir = serveDir();
    mkdirSync(join(dir, "conf"));
    const target = join(dir, "conf", "rules.yaml");
    writeFileSync(target, RULES_YAML);
    rmSync(join(dir, "rules.yaml"));
    symlinkSync(target, join(dir, "rules.yaml"));
    const s = await serve({}, RULES_YAML, dir);
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    const message = "From: a@sender.example\r\nTo: b@company.com\r\nSubject: weekly report\r\n\r\nHi.\r\n";
    expect(await sendMail(c, "b@company.com", message)).toMatch(/^250 2\.0\.0 /);
    writeFileSync(target, RULES_YAML + `  - { name: no-reports, priority: 50, category: noise, action: reject, reject_message: "No reports here", conditions: [{ field: subject, operator: contains, value: report }] }\n`);
    await s.waitForLog((l) => l.msg === "rules reloaded");
    expect(await sendMail(c, "b@company.com", message)).toBe("550 5.7.1 No reports here");
    c.end();
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("bare-LF command lines are understood; a bare-LF dot does not end DATA", async () => {
    const s = await serve();
    const c = await RawClient.connect(s.smtpPort);
    expect(await c.reply()).toStartWith("220");
    c.write("EHLO lf.example\n");
    expect(await c.reply()).toStartWith("250");
    c.write("MAIL FROM:<a@sender.example>\n");
    expect(await c.reply()).toStartWith("250");
    c.write("RCPT TO:<b@company.com>\n");
    expect(await c.reply()).toStartWith("250");
    c.write("DATA\n");
    expect(await c.reply()).toStartWith("354");
    c.write("Subject: lf\n\nbefore\n.\nafter\r\n.\r\n");
    const reply = await c.reply();
    expect(reply).toMatch(/^250 2\.0\.0 Queued as /);
    const id = reply.split(" ").pop() ?? "";
    const stored = (await archived(s, id)).toString("latin1");
    expect(stored.endsWith("Subject: lf\n\nbefore\n.\nafter\r\n")).toBe(true);
    c.end();
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("broken MIME (unclosed boundary, bad base64, bad encoded words, 8-bit garbage) is accepted and archived byte for byte", async () => {
    const s = await serve();
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    const broken =
      "From: =?utf-8?B?!!!notbase64?= <a@sender.example>\r\nTo: b@company.com\r\nSubject: =?x-unknown?Q?=ZZ?=\r\n" +
      'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="never-closed"\r\n\r\n' +
      "--never-closed\r\nContent-Type: text/plain; charset=bogus\r\nContent-Transfer-Encoding: base64\r\n\r\n%%%% not base64 \xff\xfe\r\n" +
      "--never-closed\r\nContent-Type: application/octet-stream; name=\"\xe9t\xe9.bin\"\r\n\r\n\x01\x02\x80\x81\r\n";
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
    expect(await c.cmd("RCPT TO:<b@company.com>")).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    const bytes = Buffer.from(broken, "latin1"); // raw 8-bit bytes, not UTF-8
    c.write(Buffer.concat([bytes, Buffer.from(".\r\n")]));
    const reply = await c.reply();
    expect(reply).toMatch(/^250 2\.0\.0 Queued as /);
    const id = reply.split(" ").pop() ?? "";
    const stored = await archived(s, id);
    expect(Buffer.compare(stored.subarray(stored.length - bytes.length), bytes)).toBe(0);
    c.end(); // the session's log line is written when it ends
    const session = await s.waitForLog((l) => l.msg === "smtp session" && l.id === id);
    expect(session.decision).toBe("archive");
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("stats on loopback without a token: a foreign Host name gets 403, localhost and IPs get the page", async () => {
    const s = await serve();
    const port = new URL(s.httpUrl).port;
    expect(await statusWithHost(s.httpUrl, "/stats.json", `evil.example:${port}`)).toBe(403);
    expect(await statusWithHost(s.httpUrl, "/metrics", "rebind.attacker.example")).toBe(403);
    expect(await statusWithHost(s.httpUrl, "/stats.json", `localhost:${port}`)).toBe(200);
    expect(await statusWithHost(s.httpUrl, "/stats", `127.0.0.1:${port}`)).toBe(200);
    // Open like it is with a token: a load balancer probing by the public name sees it healthy.
    expect(await statusWithHost(s.httpUrl, "/healthz", "mail.company.com")).toBe(200);
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("parameters not offered get 555, refused recipients are logged, the session and the message go on", async () => {
    const s = await serve();
    const c = await RawClient.connect(s.smtpPort);
    await greet(c, "probe.example");
    expect(await c.cmd("MAIL FROM:<a@sender.example> RET=HDRS")).toBe("555 5.5.4 Unsupported option: RET=HDRS");
    expect(await c.cmd("MAIL FROM:<a@sender.example> =x")).toBe("555 5.5.4 Unsupported option: =x"); // no name: the library's parser drops it
    expect(await c.cmd("MAIL FROM:<a@sender.example> BODY=8BITMIME")).toStartWith("250");
    expect(await c.cmd("RCPT TO:<victim@gmail.com>")).toBe("550 5.7.1 Relaying denied");
    expect(await c.cmd("RCPT TO:<b@company.com> NOTIFY=SUCCESS")).toBe("555 5.5.4 Unsupported option: NOTIFY=SUCCESS");
    expect(await c.cmd("RCPT TO:<b@company.com> =SUCCESS")).toBe("555 5.5.4 Unsupported option: =SUCCESS");
    expect(await c.cmd("RCPT TO:<b@company.com>")).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    c.write("Subject: after refusals\r\n\r\nHi.\r\n.\r\n");
    const reply = await c.reply();
    expect(reply).toMatch(/^250 2\.0\.0 Queued as /);
    const id = reply.split(" ").pop() ?? "";
    expect((await archived(s, id)).toString()).toContain("Subject: after refusals");
    c.end();
    const session = await s.waitForLog((l) => l.msg === "smtp session" && l.id === id);
    expect(session).toMatchObject({ recipients: ["b@company.com"], refused: ["victim@gmail.com (550)", "b@company.com (555)", "b@company.com (555)"] }); // the RCPTs with NOTIFY= and =SUCCESS were refused too
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("three transactions and QUIT in one write: every command answered, three messages archived; DATA x gets 501", async () => {
    const s = await serve();
    const c = await RawClient.connect(s.smtpPort);
    await greet(c, "pipeliner.example");
    const transaction = (n: number) => `MAIL FROM:<a@sender.example>\r\nRCPT TO:<b@company.com>\r\nDATA\r\n${terminated(simpleMessage(`piped-${n}`))}`;
    c.write(`${transaction(1)}${transaction(2)}${transaction(3)}MAIL FROM:<a@sender.example>\r\nRCPT TO:<b@company.com>\r\nDATA x\r\nQUIT\r\n`);
    const replies: string[] = [];
    for (let i = 0; i < 16; i++) replies.push(await c.reply(3000));
    expect(replies.map((r) => r.slice(0, 3))).toEqual([..."250 250 354 250 ".repeat(3).trim().split(" "), "250", "250", "501", "221"]);
    expect(replies[14]).toBe("501 5.5.4 Syntax: DATA");
    for (const reply of [replies[3], replies[7], replies[11]]) {
      const id = String(reply).split(" ").pop() ?? "";
      expect((await archived(s, id)).toString()).toMatch(/Subject: piped-\d/);
    }
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("DATA_DIR alone holds the database too (DATABASE_URL unset)", async () => {
    const s = await serve({ DATA_DIR: "spool-disk" });
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    const reply = await sendMail(c);
    expect(reply).toMatch(/^250 2\.0\.0 Queued as /);
    c.end();
    expect(await s.stop()).toBe(0);
    expect(existsSync(join(s.dir, "data"))).toBe(false);
    const db = new Database(join(s.dir, "spool-disk", "mail-gateway.db"), { readonly: true });
    expect(db.query("SELECT id FROM messages").all()).toEqual([{ id: reply.split(" ").pop() }]);
    db.close();
  }, 30_000);
});
