/**
 * `mailgw test` as a subprocess (`bun src/main.ts test ...`) on the .eml fixtures: decision
 * and trace text, --json shape, repeated --to, stdin `-`, RULES_FILE, exit codes 0/1/2, the
 * Received: header serve adds, and the authentication results given with --spf etc.
 * Rules files are written to a mkdtemp dir per run.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "../..");
const FIXTURES = join(ROOT, "test/fixtures/eml");

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: reject-spam-subject
    priority: 1000
    category: spam
    action: reject
    reject_message: "Message rejected as spam"
    conditions:
      - { field: subject, operator: regex, value: '^\\[SPAM\\]' }
  - name: quotes-over-tls
    priority: 100
    category: sales
    action: forward
    forward_to: [sales@sales-desk.example]
    conditions:
      - { field: subject, operator: contains, value: 견적 }
      - { field: tls, operator: equals, value: true }
  - name: pdf-from-lan
    priority: 50
    action: archive
    conditions:
      - { field: attachment, operator: ends_with, value: .pdf }
      - { field: client_ip, operator: in_cidr, value: 10.0.0.0/8 }
`;

const BAD_RULES = `rules:
  - name: broken
    action: explode
    conditions:
      - { field: subjekt, operator: contains, value: x }
`;

let dir = "";
let rulesFile = "";
let badRulesFile = "";

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "mailgw-cli-test-"));
  rulesFile = join(dir, "rules.yaml");
  badRulesFile = join(dir, "bad.yaml");
  writeFileSync(rulesFile, RULES);
  writeFileSync(badRulesFile, BAD_RULES);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }), 60_000);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function mailgw(args: string[], options: { stdin?: Uint8Array; env?: Record<string, string> } = {}): Promise<Run> {
  const child = Bun.spawn([process.execPath, join(ROOT, "src/main.ts"), "test", ...args], {
    cwd: dir,
    stdin: options.stdin ?? "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: process.env.PATH ?? "", HOME: dir, ...options.env },
  });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, stdout, stderr };
}

const fixture = (name: string): string => join(FIXTURES, name);

describe("mailgw test", () => {
  test("a message over MAX_MESSAGE_SIZE_MB: the dry run says serve would answer 552 (text and --json)", async () => {
    const big = join(dir, "big.eml");
    writeFileSync(big, `From: a@sender.example\r\nTo: b@company.com\r\nSubject: big\r\n\r\n${"x".repeat(2000)}\r\n`);
    const env = { MAX_MESSAGE_SIZE_MB: "0.001" }; // 1,048 bytes
    const text = await mailgw([big, "--rules", rulesFile], { env });
    expect(text.code).toBe(0);
    expect(text.stdout).toContain("note:     serve would refuse this message after DATA, before the rules: 552 5.3.4 Message size exceeds fixed maximum message size 1048");
    const json = JSON.parse((await mailgw([big, "--rules", rulesFile, "--json"], { env })).stdout);
    expect(json.refusedMessage).toBe("552 5.3.4 Message size exceeds fixed maximum message size 1048");
    // Under the limit (the default 25 MB, or a bad value that is serve's to report): no note.
    expect(JSON.parse((await mailgw([big, "--rules", rulesFile, "--json"])).stdout).refusedMessage).toBeNull();
    expect(JSON.parse((await mailgw([big, "--rules", rulesFile, "--json"], { env: { MAX_MESSAGE_SIZE_MB: "lots" } })).stdout).refusedMessage).toBeNull();
  });

  // serve counts the client's bytes (data-handler.ts: size > maxBytes), not its own Received line,
  // and answers 552 before it looks for a mail loop.
  test("MAX_MESSAGE_SIZE_MB at the exact byte: the limit's size is taken, one byte more gets 552; 552 comes before the loop refusal; 0 is serve's to refuse", async () => {
    const env = { MAX_MESSAGE_SIZE_MB: "0.001" }; // 1,048 bytes
    const sized = (bytes: number, head = "From: a@sender.example\r\nTo: b@company.com\r\nSubject: sized\r\n\r\n") => {
      const file = join(dir, `sized-${bytes}.eml`);
      writeFileSync(file, `${head}${"x".repeat(bytes - head.length - 2)}\r\n`);
      expect(readFileSync(file).byteLength).toBe(bytes);
      return file;
    };
    const refused = async (file: string, extra: Record<string, string> = env) =>
      JSON.parse((await mailgw([file, "--rules", rulesFile, "--json"], { env: extra })).stdout).refusedMessage;
    expect(await refused(sized(1048))).toBeNull();
    expect(await refused(sized(1049))).toBe("552 5.3.4 Message size exceeds fixed maximum message size 1048");
    expect(await refused(sized(1048), { MAX_MESSAGE_SIZE_MB: "0" })).toBeNull();
    const hops = Array.from({ length: 51 }, (_, i) => `Received: from hop${i}.example by hop${i + 1}.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n`).join("");
    const loopHead = `${hops}From: a@sender.example\r\nTo: b@company.com\r\nSubject: loop\r\n\r\n`;
    expect(await refused(sized(loopHead.length + 2, loopHead), {})).toStartWith("554 5.4.6 ");
    expect(await refused(sized(loopHead.length + 2, loopHead), { MAX_MESSAGE_SIZE_MB: "0.001" })).toBe("552 5.3.4 Message size exceeds fixed maximum message size 1048");
  });

  // A forwarded copy carries mailgw's Received: line and the relay's: a Postfix relay refuses 48
  // or more of the client's as a loop (hopcount_limit 50), so serve refuses such a forward at DATA.
  test("48 Received: lines: a forward would be refused (554 5.4.6, after the rules), an archive not; 47: neither", async () => {
    const hops = (n: number): string => Array.from({ length: n }, (_, i) => `Received: from hop${i}.example by hop${i + 1}.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n`).join("");
    const dry = async (n: number, subject: string) => {
      const file = join(dir, `hops-${n}-${subject.length}.eml`);
      writeFileSync(file, `${hops(n)}From: a@sender.example\r\nTo: b@company.com\r\nSubject: ${subject}\r\n\r\nx\r\n`);
      const json = await mailgw([file, "--rules", rulesFile, "--json", "--tls"]);
      const text = await mailgw([file, "--rules", rulesFile, "--tls"]);
      const parsed = JSON.parse(json.stdout) as { refusedForward: string | null; refusedMessage: string | null; decision: { action: string } };
      return { action: parsed.decision.action, refusedForward: parsed.refusedForward, refusedMessage: parsed.refusedMessage, noted: text.stdout.includes("serve would refuse this forward after DATA") };
    };
    const loop = "554 5.4.6 Too many hops (Received headers), mail loop suspected";
    expect(await dry(48, "견적")).toEqual({ action: "forward", refusedForward: loop, refusedMessage: null, noted: true });
    expect(await dry(47, "견적")).toEqual({ action: "forward", refusedForward: null, refusedMessage: null, noted: false });
    expect(await dry(48, "plain")).toEqual({ action: "archive", refusedForward: null, refusedMessage: null, noted: false });
  });

  test("a file with LF line endings and 8-bit (not UTF-8) bytes is counted byte for byte as its CRLF form", async () => {
    const crlf = Buffer.from("From: a@sender.example\r\nTo: b@company.com\r\nSubject: caf\xe9\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nna\xefve r\xe9sum\xe9\r\n", "latin1");
    const lf = Buffer.from(crlf.toString("latin1").replaceAll("\r\n", "\n"), "latin1");
    const run = async (bytes: Uint8Array) => JSON.parse((await mailgw(["-", "--rules", rulesFile, "--json"], { stdin: bytes })).stdout).facts;
    const [asCrlf, asLf] = [await run(crlf), await run(lf)];
    expect(asLf.size).toBe(asCrlf.size);
    expect(asLf.bodyPreview).toBe("naïve résumé\n");
    expect(asLf.bodyPreview).toBe(asCrlf.bodyPreview);
  });

  test("every recipient refused at RCPT: they stay the rcpt the rules see, and the report says serve would take no message", async () => {
    const json = JSON.parse((await mailgw([fixture("utf8-korean-subject.eml"), "--rules", rulesFile, "--json", "--to", "someone@gmail.com"])).stdout);
    expect(json.refusedRecipients).toEqual([{ address: "someone@gmail.com", reply: "550 5.7.1 Relaying denied" }]);
    expect(json.facts.rcpt).toEqual(["someone@gmail.com"]);
    expect(json.facts.headers.received[0]).toContain("for <someone@gmail.com>");
    const text = await mailgw([fixture("utf8-korean-subject.eml"), "--rules", rulesFile, "--to", "someone@gmail.com"]);
    expect(text.stdout).toContain("rcpt=<someone@gmail.com> ");
    expect(text.stdout).toContain("note:     serve would refuse at RCPT <someone@gmail.com> (550 5.7.1 Relaying denied): with no recipient left, the message would not be accepted at all\n");
  });

  test("a header From that serve would refuse as MAIL FROM is no refused sender without --from (the client's envelope is its own)", async () => {
    const message = new TextEncoder().encode('From: "v@x"@sender.example\r\nTo: b@company.com\r\nSubject: hi\r\n\r\nhi\r\n');
    const out = JSON.parse((await mailgw(["-", "--rules", rulesFile, "--json"], { stdin: message })).stdout);
    expect(out.facts.mailFrom).toBe('"v@x"@sender.example');
    expect(out.refusedSender).toBeNull();
    const given = JSON.parse((await mailgw(["-", "--rules", rulesFile, "--json", "--from", '"v@x"@sender.example'], { stdin: message })).stdout);
    expect(given.refusedSender).toBe("501 5.1.7 Error: Bad sender address syntax");
  });

  test("the text report: the size counted, rcpt (none), an empty list as [] (none), +archive only for a rule that also archives, every auth result given", async () => {
    const rules = join(dir, "render.yaml");
    writeFileSync(rules, `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: no-exe, priority: 20, action: reject, conditions: [{ field: attachment, operator: ends_with, value: .exe }] }
  - { name: copy-hi, priority: 10, action: forward, forward_to: [x@sales-desk.example], archive: true, conditions: [{ field: subject, operator: equals, value: hi }] }
`);
    const eml = join(dir, "render.eml");
    writeFileSync(eml, "From: a@sender.example\r\nTo: undisclosed-recipients:;\r\nSubject: hi\r\n\r\nbody\r\n");
    const size = JSON.parse((await mailgw([eml, "--rules", rules, "--json"])).stdout).facts.size;
    const run = await mailgw([eml, "--rules", rules, "--spf", "pass", "--dkim", "pass", "--dmarc", "pass"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`message:  ${eml} (${size} bytes with mailgw's Received: header)\n`);
    expect(run.stdout).toContain("envelope: mail_from=<a@sender.example> rcpt=(none) client_ip=127.0.0.1");
    expect(run.stdout).toContain('no   attachment ends_with ".exe"   actual: [] (none)\n');
    expect(run.stdout).toContain("auth:     spf=pass (given) dkim=pass (given) dmarc=pass (given)\n");
    expect(run.stdout).toContain("decision: forward  rule=copy-hi  category=copy-hi  forward_to=x@sales-desk.example  +archive\n");
    const plain = await mailgw([fixture("spam-subject.eml"), "--rules", rulesFile]);
    expect(plain.stdout).toContain('decision: reject  rule=reject-spam-subject  category=spam  reply="550 5.7.1 Message rejected as spam"\n');
  });

  test("spam subject: reject, with the matching condition and its actual value", async () => {
    const run = await mailgw([fixture("spam-subject.eml"), "--rules", rulesFile]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("MATCH reject-spam-subject (priority 1000");
    expect(run.stdout).toContain('yes  subject regex /^\\[SPAM\\]/i   actual: "[SPAM] cheap pills"');
    expect(run.stdout).toContain('decision: reject  rule=reject-spam-subject  category=spam  reply="550 5.7.1 Message rejected as spam"');
    expect(run.stdout).toContain("mail_from=<deals@spam.example> rcpt=<sales@company.com>"); // header defaults
  });

  test("trace shows failed conditions with actual values, then the default", async () => {
    const run = await mailgw([fixture("utf8-korean-subject.eml"), "--rules", rulesFile]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("no    quotes-over-tls (priority 100, all conditions)");
    expect(run.stdout).toContain('yes  subject contains "견적"   actual: "견적 요청"');
    expect(run.stdout).toContain("no   tls equals");
    expect(run.stdout).toContain("actual: false");
    expect(run.stdout).toContain("(no rule matched: default applies)");
    expect(run.stdout).toContain("decision: archive  rule=(default)  category=default");
  });

  test("--tls, --client-ip and repeated --to set the envelope (--json)", async () => {
    const run = await mailgw([
      fixture("utf8-korean-subject.eml"), "--rules", rulesFile, "--json", "--tls",
      "--to", "A@Company.COM", "--to=b@company.com", "--from", "<Sender@Example.NET>", "--client-ip", "10.1.2.3", "--helo", "mx.example.net",
    ]);
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout);
    expect(out.decision).toMatchObject({ action: "forward", rule: "quotes-over-tls", category: "sales", forwardTo: ["sales@sales-desk.example"] });
    expect(out.trace.map((r: { rule: string }) => r.rule)).toEqual(["reject-spam-subject", "quotes-over-tls"]);
    expect(out.trace[1].conditions[1]).toMatchObject({ field: "tls", operator: "equals", matched: true, actual: true });
    expect(out.facts).toMatchObject({
      rcpt: ["A@company.com", "b@company.com"],
      mailFrom: "Sender@example.net",
      clientIp: "10.1.2.3",
      helo: "mx.example.net",
      tls: true,
      subject: "견적 요청",
      parseError: null,
    });
    expect(out.facts.headers["x-custom"]).toEqual(["값"]);
    expect(out.rules).toMatchObject({ file: rulesFile, count: 3 });
  });

  test("a recipient serve would refuse at RCPT (not in domains) is pointed out, text and --json", async () => {
    const mixed = await mailgw([fixture("utf8-korean-subject.eml"), "--rules", rulesFile, "--to", "someone@gmail.com", "--to", "a@company.com"]);
    expect(mixed.code).toBe(0);
    expect(mixed.stdout).toContain("note:     serve would refuse at RCPT <someone@gmail.com> (550 5.7.1 Relaying denied)\n");
    const none = await mailgw([fixture("utf8-korean-subject.eml"), "--rules", rulesFile, "--to", "v%x@company.com", "--json"]);
    expect(JSON.parse(none.stdout).refusedRecipients).toEqual([{ address: "v%x@company.com", reply: "550 5.7.1 Relaying denied: address routing syntax not accepted" }]);
    const ok = await mailgw([fixture("utf8-korean-subject.eml"), "--rules", rulesFile]);
    expect(ok.stdout).not.toContain("note:");
  });

  // serve's smtp-server answers 501 to these before any rule or domain check; the dry run must say so.
  test("addresses serve refuses by syntax (501) are pointed out; postmaster and A-labels take serve's stored form", async () => {
    const json = async (...flags: string[]) => JSON.parse((await mailgw([fixture("utf8-korean-subject.eml"), "--rules", rulesFile, "--json", ...flags])).stdout);
    for (const from of ["not an address", "a@b@c"]) {
      expect((await json("--from", from)).refusedSender).toBe("501 5.1.7 Error: Bad sender address syntax");
    }
    // What Postfix takes, serve takes too (smtp/lenient-syntax.ts): a quoted space, dots a carrier allowed.
    for (const from of ["a@b.example", '"john smith"@sender.example', "taro..yamada@docomo.ne.jp", "taro.@ezweb.ne.jp", "bounce@mail_out.example"]) {
      expect({ from, refused: (await json("--from", from)).refusedSender }).toEqual({ from, refused: null });
    }
    expect((await json("--from", `${"a".repeat(250)}@b.example`)).refusedSender).toBe("501 5.1.7 Error: Bad sender address syntax");
    for (const to of ["x@company.com..", '"v@x"@company.com']) {
      expect((await json("--to", to)).refusedRecipients).toEqual([{ address: to, reply: "501 5.1.3 Error: Bad recipient address syntax" }]);
    }
    const quoted = await json("--to", '"john smith"@company.com', "--to", "john..doe@company.com");
    expect(quoted.refusedRecipients).toEqual([]);
    expect(quoted.facts.rcpt).toEqual(['"john smith"@company.com', "john..doe@company.com"]);
    const postmaster = await json("--to", "postmaster", "--from", "a@xn--mnchen-3ya.de");
    expect(postmaster.refusedRecipients).toEqual([]);
    expect(postmaster.facts.rcpt).toEqual(["postmaster@company.com"]);
    expect(postmaster.facts.mailFrom).toBe("a@xn--mnchen-3ya.de");
    // The DNS root's dot: serve takes `x@company.com.` and `a@sender.example.` without it, as Postfix does.
    const dotted = await json("--to", "x@company.com.", "--from", "a@Sender.example.");
    expect({ refused: dotted.refusedRecipients, sender: dotted.refusedSender, rcpt: dotted.facts.rcpt, from: dotted.facts.mailFrom }).toEqual({ refused: [], sender: null, rcpt: ["x@company.com"], from: "a@sender.example" });
    // Two spellings of one address serve keeps once (its stored form, as recipient-policy.ts has it).
    const twice = await json("--to", "postmaster", "--to", "postmaster@company.com", "--to", '"v"@company.com', "--to", "v@company.com");
    expect(twice.facts.rcpt).toEqual(["postmaster@company.com", "v@company.com"]);
    const text = await mailgw([fixture("utf8-korean-subject.eml"), "--rules", rulesFile, "--from", "a@b@c"]);
    expect(text.stdout).toContain("note:     serve would refuse MAIL FROM <a@b@c> (501 5.1.7 Error: Bad sender address syntax): the message would not be accepted at all\n");
  });

  test("a quoted local part in From: cannot slip past a rule for the plain address", async () => {
    const rules = join(dir, "spoof.yaml");
    writeFileSync(rules, "domains: [company.com]\nrules:\n  - name: spoofed-boss\n    priority: 10\n    action: reject\n    conditions:\n      - { field: from, operator: equals, value: boss@company.com }\n");
    for (const from of ['"boss"@company.com', 'Boss <"boss"@company.com>', "boss@company.com"]) {
      const message = new TextEncoder().encode(`From: ${from}\r\nTo: a@company.com\r\nSubject: pay this\r\n\r\nhi\r\n`);
      const out = JSON.parse((await mailgw(["-", "--rules", rules, "--json"], { stdin: message })).stdout);
      expect(out.facts.from).toBe("boss@company.com");
      expect(out.decision).toMatchObject({ rule: "spoofed-boss", action: "reject" });
    }
  });

  test("envelope addresses take serve's form: needless quotes dropped, domain lower-cased", async () => {
    const run = await mailgw([fixture("utf8-korean-subject.eml"), "--rules", rulesFile, "--from", '"bob"@Sender.Example', "--to", '"ceo"@Company.COM', "--json"]);
    expect(run.code).toBe(0);
    const facts = JSON.parse(run.stdout).facts;
    expect(facts.mailFrom).toBe("bob@sender.example");
    expect(facts.rcpt).toEqual(["ceo@company.com"]);
  });

  test("the default envelope sender (header From) takes serve's form too: an IDN domain in ASCII", async () => {
    const message = new TextEncoder().encode("From: Anna <anna@Bücher.example>\r\nTo: a@company.com\r\nSubject: hi\r\n\r\nhi\r\n");
    const out = JSON.parse((await mailgw(["-", "--rules", rulesFile, "--json"], { stdin: message })).stdout);
    expect(out.facts.mailFrom).toBe("anna@xn--bcher-kva.example");
  });

  test("no MESSAGE is a usage error: exit 1 (2 is for a message that cannot be read)", async () => {
    const run = await mailgw(["--rules", rulesFile]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("missing MESSAGE");
  });

  test("--client-ip that is not an address: exit 1, one line", async () => {
    const run = await mailgw([fixture("utf8-korean-subject.eml"), "--rules", rulesFile, "--client-ip", "not-an-ip"]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toBe('mailgw: --client-ip must be an IPv4 or IPv6 address (got "not-an-ip")\n');
  });

  test("--client-ip in IPv6 forms: the address serve would log (compressed, lower case, mapped IPv4 unwrapped); a zone id is refused", async () => {
    for (const [given, serveForm] of [["2001:DB8:0:0:0:0:0:1", "2001:db8::1"], ["::FFFF:10.1.2.3", "10.1.2.3"], ["::ffff:a01:203", "10.1.2.3"]]) {
      const run = await mailgw([fixture("utf8-korean-subject.eml"), "--rules", rulesFile, "--client-ip", given ?? "", "--json"]);
      expect(run.code).toBe(0);
      expect((JSON.parse(run.stdout) as { facts: { clientIp: string } }).facts.clientIp).toBe(serveForm ?? "");
    }
    const zoned = await mailgw([fixture("utf8-korean-subject.eml"), "--rules", rulesFile, "--client-ip", "fe80::1%eth0"]);
    expect(zoned.code).toBe(1);
    expect(zoned.stdout).toBe("");
    expect(zoned.stderr).toBe("mailgw: --client-ip fe80::1%eth0 has an interface (zone id): serve sees the address without it; give fe80::1\n");
  });

  test("like serve: --helo with several words is its first word (serve takes `HELO office scanner` as office)", async () => {
    const out = JSON.parse((await mailgw([fixture("spam-subject.eml"), "--rules", rulesFile, "--json", "--helo", "Office Scanner 2"])).stdout);
    expect(out.facts.helo).toBe("office");
    expect(out.facts.headers.received[0]).toStartWith("from office ([127.0.0.1])");
  });

  test("like serve: mailgw's Received: header is on top, and counts in size", async () => {
    const plain = (await Bun.file(fixture("spam-subject.eml")).bytes()).byteLength;
    const run = await mailgw([fixture("spam-subject.eml"), "--rules", rulesFile, "--json", "--helo", "client.example"], { env: { SMTP_HOSTNAME: "mx.test" } });
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout);
    expect(out.facts.headers.received[0]).toStartWith("from client.example ([127.0.0.1])");
    expect(out.facts.headers.received[0]).toContain("by mx.test (mailgw) with ESMTP");
    expect(out.facts.size).toBeGreaterThan(plain);
  });

  test("SPF/DKIM/DMARC/ARC: none unless given (no DNS in a dry run), and said so; --spf fail matches an spf rule", async () => {
    const authRules = join(dir, "auth.yaml");
    writeFileSync(authRules, `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: spf-fail
    priority: 10
    category: spoofed
    action: reject
    conditions:
      - { field: spf, operator: equals, value: fail }
`);
    const unchecked = await mailgw([fixture("spam-subject.eml"), "--rules", authRules]);
    expect(unchecked.code).toBe(0);
    expect(unchecked.stdout).toContain("auth:     spf=none dkim=none dmarc=none   not checked in a dry run");
    expect(unchecked.stdout).toContain("decision: archive  rule=(default)");
    const given = await mailgw([fixture("spam-subject.eml"), "--rules", authRules, "--spf", "fail", "--dkim", "pass"]);
    expect(given.code).toBe(0);
    expect(given.stdout).toContain("spf=fail (given) dkim=pass (given) dmarc=none");
    expect(given.stdout).toContain("decision: reject  rule=spf-fail");
    const json = JSON.parse((await mailgw([fixture("spam-subject.eml"), "--rules", authRules, "--json", "--dmarc", "fail"])).stdout);
    expect(json).toMatchObject({ authChecked: false, authGiven: ["dmarc"], facts: { spf: "none", dmarc: "fail" } });
    const bad = await mailgw([fixture("spam-subject.eml"), "--rules", authRules, "--spf", "maybe"]);
    expect(bad.code).toBe(1); // a bad flag: 2 is kept for an unreadable message
    expect(bad.stderr).toContain("--spf must be one of pass, fail, softfail, neutral, none, temperror, permerror");
  });

  test("message from stdin with -", async () => {
    const run = await mailgw(["-", "--rules", rulesFile, "--client-ip", "10.9.9.9", "--json"], {
      stdin: await Bun.file(fixture("attachments.eml")).bytes(),
    });
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout);
    expect(out.source).toBe("(stdin)");
    expect(out.decision.rule).toBe("pdf-from-lan");
    expect(out.facts.attachments).toEqual(["invoice.pdf", "견적.exe", "사진.png"]);
  });

  test("a part named twice (Content-Type name, Content-Disposition filename): a rule sees every name, in any encoding", async () => {
    const blockFile = join(dir, "block.yaml");
    writeFileSync(blockFile, `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: no-scr, priority: 30, action: reject, conditions: [{ field: attachment, operator: ends_with, value: .scr }] }
  - { name: no-exe, priority: 20, action: reject, conditions: [{ field: attachment, operator: ends_with, value: .exe }] }
`);
    const run = await mailgw([fixture("two-names.eml"), "--rules", blockFile, "--json"]);
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout);
    // report.scr is only in an RFC 2047 name=, beside filename*0*/filename*1* sections saying report.pdf.
    expect(out.decision.rule).toBe("no-scr");
    expect(out.facts.attachments).toEqual(["invoice.pdf", "invoice.exe", "report.pdf", "report.scr", "photo.js", "photo.jpg", "list.csv"]);
    // invoice.exe is only in name=, beside filename="invoice.pdf".
    writeFileSync(blockFile, readFileSync(blockFile, "utf8").replace(".scr", ".none"));
    const text = await mailgw([fixture("two-names.eml"), "--rules", blockFile]);
    expect(text.stdout).toContain('yes  attachment ends_with ".exe"   actual: ["invoice.pdf", "invoice.exe", "report.pdf", "report.scr", "photo.js", "photo.jpg", "list.csv"]');
    expect(text.stdout).toContain("decision: reject  rule=no-exe");
  });

  test("RULES_FILE is honoured when --rules is absent", async () => {
    const run = await mailgw([fixture("spam-subject.eml")], { env: { RULES_FILE: rulesFile } });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("decision: reject");
  });

  test("invalid rules: exit 1 with the lint errors", async () => {
    const run = await mailgw([fixture("spam-subject.eml"), "--rules", badRulesFile]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toContain(`${badRulesFile}:3:`);
    expect(run.stderr).toContain("explode");
    expect(run.stderr).toContain("rules");
  });

  test("missing rules file: exit 1", async () => {
    const run = await mailgw([fixture("spam-subject.eml"), "--rules", join(dir, "nope.yaml")]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("nope.yaml");
  });

  test("a header read two ways is 'parsed in full'; a message cut at a parse limit is 'parsed partially'", async () => {
    const twoWays = join(dir, "two-ways.eml");
    writeFileSync(twoWays, "From: a@sender.example\r\nTo: b@company.com\r\nthis line starts no field\r\nSubject: hi\r\n\r\nbody\r\n");
    const run = await mailgw([twoWays, "--rules", rulesFile]);
    expect(run.stdout).toMatch(/ — parsed in full: header block read two ways \(a line that is no header field/);
    const attachments = Array.from({ length: 1001 }, (_, i) => `--b\r\nContent-Type: application/octet-stream; name="f${i}.bin"\r\n\r\nx\r\n`).join("");
    const many = join(dir, "many-attachments.eml");
    writeFileSync(many, `From: a@sender.example\r\nTo: b@company.com\r\nSubject: hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n${attachments}--b--\r\n`);
    expect((await mailgw([many, "--rules", rulesFile])).stdout).toMatch(/ — parsed partially: more than 1000 attachments, the rest not listed/);
  });

  test("no recipient at all (undisclosed-recipients, no --to): decided, with a note that serve needs a RCPT TO", async () => {
    const eml = join(dir, "undisclosed.eml");
    writeFileSync(eml, "From: a@sender.example\r\nTo: undisclosed-recipients:;\r\nSubject: hi\r\n\r\nbody\r\n");
    const note = "no recipient (no --to, none in the header To): serve takes no message without an accepted RCPT TO; give --to";
    const run = await mailgw([eml, "--rules", rulesFile]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(note);
    const given = await mailgw([eml, "--rules", rulesFile, "--json", "--to", "b@company.com"]);
    expect(JSON.parse(given.stdout).inputNotes).not.toContain(note);
  });

  test("unreadable message: exit 2, one line on stderr", async () => {
    const run = await mailgw([join(dir, "missing.eml"), "--rules", rulesFile]);
    expect(run.code).toBe(2);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toContain("cannot read message");
  });

  test("an empty message (stdin or file): exit 2, said so", async () => {
    const stdin = await mailgw(["-", "--rules", rulesFile], { stdin: new Uint8Array(0) });
    expect(stdin.code).toBe(2);
    expect(stdin.stderr.trim()).toBe("mailgw: cannot read message from stdin: it is empty (0 bytes)");
    const empty = join(dir, "empty.eml");
    await Bun.write(empty, "");
    const file = await mailgw([empty, "--rules", rulesFile]);
    expect(file.code).toBe(2);
    expect(file.stderr).toContain("it is empty");
  });

  test("broken MIME, bare LF and NUL bytes still decide (exit 0)", async () => {
    for (const name of ["broken-mime.eml", "bare-lf.eml", "nul-bytes.eml"]) {
      const run = await mailgw([fixture(name), "--rules", rulesFile, "--json"]);
      expect(run.code).toBe(0);
      expect(JSON.parse(run.stdout).decision.action).toBe("archive");
    }
  });

  test("terminal escapes and bidi overrides from the message's headers are shown as \\uXXXX in the text report", async () => {
    const hostile = join(dir, "escapes.eml");
    const title = Buffer.from("\u202etxt.exe").toString("base64");
    writeFileSync(hostile, `From: "x" <a\x1b[31mred@evil.example>\r\nTo: b\x1b]0;owned\x07@company.com\r\nSubject: =?utf-8?B?${title}?=\r\n\r\nbody\r\n`);
    const run = await mailgw([hostile, "--rules", rulesFile]);
    expect(run.code).toBe(0);
    expect(run.stdout).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]/);
    expect(run.stdout).toContain("from: a\\u001b[31mred@evil.example");
    expect(run.stdout).toContain("mail_from=<a\\u001b[31mred@evil.example>");
    expect(run.stdout).toContain('subject:  "\\u202etxt.exe"');
  });

  test("--json: bidi overrides, C1 controls and zero-width characters are \\uXXXX too, and parse to the same values", async () => {
    const hostile = join(dir, "escapes-json.eml");
    const subject = "\u202etxt.exe\u009b2J\u200b\u2028x";
    writeFileSync(hostile, `From: "\u202eevil" <a@evil.example>\r\nTo: b@company.com\r\nSubject: =?utf-8?B?${Buffer.from(subject).toString("base64")}?=\r\n\r\nbody\u202e\r\n`);
    const run = await mailgw([hostile, "--rules", rulesFile, "--json"]);
    expect(run.code).toBe(0);
    expect(run.stdout).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2028\u202e]/);
    const report = JSON.parse(run.stdout);
    expect(report.facts.subject).toBe(subject);
    expect(report.facts.fromName).toBe("\u202eevil");
    expect(report.facts.bodyPreview).toContain("body\u202e");
  });
});
