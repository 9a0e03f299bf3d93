/**
 * `mailgw test` (dry run) against the real `mailgw serve`, both from the compiled executable:
 * the same message with the same envelope gets the same decision, and the dry run shows the
 * facts serve classified on. Each case sends a message over SMTP, reads serve's decision from
 * its database, and runs `mailgw test` on the same bytes with the same rules file.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { RawClient, greet, makeCert } from "../smtp/helpers.ts";
import { archivedCopy, cleanupBinary, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";
import { BARE_PATH, copyBinaryToTemp, findTool, runBinary, type CopiedBinary } from "../packaging/binary.ts";

const PYTHON = findTool("python3");
if (!PYTHON) console.warn("skip (the --tls parity test): python3 not installed, its smtplib is the OpenSSL client");

const RULES = `domains: [company.com, bücher.example]
default: { action: archive, category: default }
rules:
  - { name: no-viagra, priority: 30, action: reject, conditions: [{ field: body, operator: contains, value: viagra }] }
  - { name: empty-body-zip, priority: 25, action: reject, conditions: [{ field: body, operator: exists, not: true }, { field: attachment, operator: ends_with, value: .zip }] }
  - { name: ceo-spoof, priority: 28, action: reject, conditions: [{ field: from, operator: equals, value: ceo@company.com }, { field: client_ip, operator: equals, value: 127.0.0.1 }] }
  - { name: no-exe, priority: 20, action: reject, conditions: [{ field: attachment, operator: ends_with, value: .exe }] }
  - { name: loopback-v4, priority: 5, action: archive, conditions: [{ field: client_ip, operator: equals, value: 127.0.0.1 }, { field: subject, operator: equals, value: from loopback }] }
  - { name: over-size, priority: 4, action: archive, conditions: [{ field: subject, operator: equals, value: sized }, { field: size, operator: gt, value: 100MB }] }
  - { name: forged-hop, priority: 40, action: reject, conditions: [{ field: "header:received", operator: contains, value: by trusted.example }] }
  - { name: outside-rcpt, priority: 3, action: drop, conditions: [{ field: rcpt, operator: ends_with, value: "@other.example" }] }
  - { name: idn-shop, priority: 2, action: drop, conditions: [{ field: rcpt, operator: ends_with, value: "@bücher.example" }, { field: from, operator: equals, value: "verkauf@bücher.example" }, { field: to, operator: equals, value: "info@xn--bcher-kva.example" }] }
  - { name: invoice-de, priority: 10, action: archive, conditions: [{ field: body, operator: contains, value: "Rechnung für Müller" }] }
  - { name: helo-v6-literal, priority: 1, action: drop, conditions: [{ field: helo, operator: regex, value: '^\\[ipv6:', flags: "" }, { field: subject, operator: equals, value: v6 helo }] }
`;

let serve: ServeProcess;
let binary: CopiedBinary;

beforeAll(async () => {
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  const { key, cert } = makeCert(dir); // STARTTLS offered, for the --tls case
  serve = await startServe("binary", dir, { SMTP_TLS_KEY: key, SMTP_TLS_CERT: cert });
  binary = copyBinaryToTemp();
}, 60_000);

afterAll(async () => {
  await serve?.stop();
  binary?.cleanup();
  cleanupBinary();
}, 60_000);

interface Served {
  reply: string;
  rule: string | null;
  size: number | null;
}

/** Sends `message` (CRLF lines) from a@sender.example to b@company.com (or `rcpts`); serve's reply and recorded rule. */
async function sendToServe(message: string, mailFrom = "<a@sender.example>", rcpts = ["b@company.com"], helo = "client.example"): Promise<Served> {
  const c = await RawClient.connect(serve.smtpPort, "127.0.0.1");
  await greet(c, helo);
  await c.cmd(`MAIL FROM:${mailFrom}`);
  for (const rcpt of rcpts) await c.cmd(`RCPT TO:<${rcpt}>`);
  await c.cmd("DATA");
  const reply = await c.cmd(`${message.replace(/\r\n\./g, "\r\n..")}.`); // message ends with CRLF
  c.end();
  const db = new Database(join(serve.dir, "data", "mail-gateway.db"), { readonly: true });
  try {
    const row = db.query<{ rule: string | null; size: number }, []>("SELECT rule, size FROM messages ORDER BY received_at DESC, rowid DESC LIMIT 1").get();
    return { reply, rule: row?.rule ?? null, size: row?.size ?? null };
  } finally {
    db.close();
  }
}

/** `mailgw test` on the same bytes and envelope; its JSON output. */
async function dryRun(message: string, extra: string[] = [], envelope = ["--from", "a@sender.example", "--to", "b@company.com"], helo = "client.example") {
  const file = join(serve.dir, "dry-run.eml");
  writeFileSync(file, message);
  const args = ["test", file, "--rules", "rules.yaml", ...envelope, "--helo", helo, "--json", ...extra];
  const out = await runBinary(binary.bin, args, { cwd: serve.dir, env: { PATH: BARE_PATH, SMTP_HOSTNAME: "mx.test" } });
  expect({ exit: out.exitCode, stderr: out.stderr }).toEqual({ exit: 0, stderr: "" });
  return JSON.parse(out.stdout);
}

const lines = (...l: string[]): string => `${l.join("\r\n")}\r\n`;

describe("mailgw test decides as serve does", () => {
  // serve's smtp-server lower-cases the EHLO name; a case-sensitive helo regex saw the difference.
  test("EHLO [IPv6:::1]: a case-sensitive helo regex decides alike, and the facts show helo as serve has it", async () => {
    const message = lines("From: a@sender.example", "To: b@company.com", "Subject: v6 helo", "", "hi");
    const served = await sendToServe(message, "<a@sender.example>", ["b@company.com"], "[IPv6:::1]");
    expect(served.reply).toStartWith("250 ");
    expect(served.rule).toBe("helo-v6-literal");
    const dry = await dryRun(message, [], ["--from", "a@sender.example", "--to", "b@company.com"], "[IPv6:::1]");
    expect(dry.decision.rule).toBe("helo-v6-literal");
    expect(dry.facts.helo).toBe("[ipv6:::1]");
  }, 30_000);

  test("an HTML entity named like an Object member (&constructor;) costs no body or attachment facts", async () => {
    const message = lines(
      "From: a@sender.example", "To: b@company.com", "Subject: offer", "Content-Type: multipart/mixed; boundary=b", "",
      "--b", "Content-Type: text/html", "", "<p>cheap viagra &constructor; &toString;</p>",
      "--b", "Content-Type: application/octet-stream", 'Content-Disposition: attachment; filename="x.exe"', "", "TVo=",
      "--b--",
    );
    const served = await sendToServe(message);
    expect(served.reply).toStartWith("550 5.7.1");
    expect(served.rule).toBe("no-viagra");
    const dry = await dryRun(message);
    expect(dry.decision.rule).toBe("no-viagra");
    expect(dry.facts.parseError).toBeNull();
    expect(dry.facts.attachments).toEqual(["x.exe"]);
  }, 30_000);

  test("an HTML-only body with Latin-1 entities (f&uuml;r) matches a rule written in plain text", async () => {
    const message = lines(
      "From: a@sender.example", "To: b@company.com", "Subject: Ihre Rechnung", "Content-Type: text/html; charset=us-ascii", "",
      "<p>Ihre Rechnung f&uuml;r M&Uuml;LLER &amp; Co.</p>",
    );
    const served = await sendToServe(message);
    expect(served.reply).toStartWith("250 ");
    expect(served.rule).toBe("invoice-de");
    const dry = await dryRun(message);
    expect(dry.decision.rule).toBe("invoice-de");
    expect(dry.facts.bodyPreview).toBe("Ihre Rechnung für MÜLLER & Co.");
  }, 30_000);

  test("a body of blank lines (as mail clients send an empty one) does not exist: `not: true` matches", async () => {
    const withText = (text: string[]) => lines(
      "From: a@sender.example", "To: b@company.com", "Subject: invoice", "Content-Type: multipart/mixed; boundary=b", "",
      "--b", "Content-Type: text/plain; charset=utf-8", "", ...text,
      "--b", "Content-Type: application/zip", 'Content-Disposition: attachment; filename="invoice.zip"', "", "UEsFBg==",
      "--b--",
    );
    for (const empty of [withText([""]), withText(["", " \t", ""])]) {
      const served = await sendToServe(empty);
      expect(served.reply).toStartWith("550 5.7.1");
      expect(served.rule).toBe("empty-body-zip");
      const dry = await dryRun(empty);
      expect(dry.decision.rule).toBe("empty-body-zip");
    }
    const worded = withText(["see attached"]);
    expect((await sendToServe(worded)).rule).toBeNull();
    expect((await dryRun(worded)).decision.rule).toBeNull();
  }, 30_000);

  test("a blank text part beside an HTML one (multipart/alternative) is no text: `body` is the HTML's", async () => {
    const message = lines(
      "From: a@sender.example", "To: b@company.com", "Subject: offer", "Content-Type: multipart/alternative; boundary=b", "",
      "--b", "Content-Type: text/plain; charset=utf-8", "", "", " ",
      "--b", "Content-Type: text/html; charset=utf-8", "", "<p>cheap viagra</p>",
      "--b--",
    );
    const served = await sendToServe(message);
    expect(served.reply).toStartWith("550 5.7.1");
    expect(served.rule).toBe("no-viagra");
    const dry = await dryRun(message);
    expect(dry.decision.rule).toBe("no-viagra");
    expect(dry.facts.bodyPreview).toBe("cheap viagra");
  }, 30_000);

  test("an attachment name with trailing spaces or dots (Windows drops them when saving) still ends with .exe", async () => {
    for (const name of ['filename="setup.EXE "', 'filename="setup.exe."', "filename*=utf-8''setup.exe%20%2E"]) {
      const message = lines(
        "From: a@sender.example", "To: b@company.com", "Subject: setup", "Content-Type: multipart/mixed; boundary=b", "",
        "--b", "Content-Type: text/plain", "", "see attached",
        "--b", "Content-Type: application/octet-stream", `Content-Disposition: attachment; ${name}`, "", "TVo=",
        "--b--",
      );
      const served = await sendToServe(message);
      expect(served.reply).toStartWith("550 5.7.1");
      expect(served.rule).toBe("no-exe");
      expect((await dryRun(message)).decision.rule).toBe("no-exe");
    }
  }, 30_000);

  test("a part named twice (filename= and name=, plain, encoded words or RFC 2231): serve rejects on the .exe in either", async () => {
    const names = [
      ['Content-Type: application/octet-stream; name="invoice.exe"', 'Content-Disposition: attachment; filename="invoice.pdf"'],
      ['Content-Type: application/pdf; name="invoice.pdf"', 'Content-Disposition: attachment; filename="invoice.exe"'],
      ['Content-Type: application/pdf; name="=?utf-8?B?aW52b2ljZS5leGU=?="', "Content-Disposition: attachment; filename*0*=utf-8''invoice; filename*1=.pdf"],
      ["Content-Type: application/pdf", "Content-Disposition: attachment; filename=\"invoice.exe\"; filename*=utf-8''invoice.pdf"],
    ];
    for (const fields of names) {
      const message = lines(
        "From: a@sender.example", "To: b@company.com", "Subject: invoice", "Content-Type: multipart/mixed; boundary=b", "",
        "--b", "Content-Type: text/plain", "", "see attached",
        "--b", ...fields, "Content-Transfer-Encoding: base64", "", "TVqQAAMAAAAEAAAA",
        "--b--",
      );
      const served = await sendToServe(message);
      expect({ fields, reply: served.reply.slice(0, 9), rule: served.rule }).toEqual({ fields, reply: "550 5.7.1", rule: "no-exe" });
      const dry = await dryRun(message);
      expect(dry.decision.rule).toBe("no-exe");
      expect(dry.facts.attachments.toSorted()).toEqual(["invoice.exe", "invoice.pdf"]);
    }
  }, 30_000);

  test("a text part that names a file but is not marked attachment is listed as one too (clients show and save it), and stays body text", async () => {
    for (const fields of [['Content-Type: text/plain; name="x.exe"'], ["Content-Type: text/html", 'Content-Disposition: inline; filename="x.exe"']]) {
      const message = lines(
        "From: a@sender.example", "To: b@company.com", "Subject: invoice", "Content-Type: multipart/mixed; boundary=b", "",
        "--b", "Content-Type: text/plain", "", "see attached",
        "--b", ...fields, "Content-Transfer-Encoding: base64", "", Buffer.from("MZ program").toString("base64"),
        "--b--",
      );
      const served = await sendToServe(message);
      expect({ fields, reply: served.reply.slice(0, 9), rule: served.rule }).toEqual({ fields, reply: "550 5.7.1", rule: "no-exe" });
      const dry = await dryRun(message);
      expect(dry.decision.rule).toBe("no-exe");
      expect(dry.facts.attachments).toEqual(["x.exe"]);
      expect(dry.facts.attachmentTypes).toEqual([fields[0]?.includes("html") ? "text/html" : "text/plain"]);
      expect(dry.facts.bodyPreview).toContain("MZ program");
    }
  }, 30_000);

  test("a name with a NUL in it (RFC 2231 %00, RFC 2047 =00) is also the name before the NUL, as C-string software saves it", async () => {
    for (const field of ["filename*=utf-8''x.exe%00.pdf", 'filename="=?utf-8?Q?x.exe=00.pdf?="']) {
      const message = lines(
        "From: a@sender.example", "To: b@company.com", "Subject: nul", "Content-Type: multipart/mixed; boundary=b", "",
        "--b", "Content-Type: text/plain", "", "see attached",
        "--b", "Content-Type: application/pdf", `Content-Disposition: attachment; ${field}`, "Content-Transfer-Encoding: base64", "", "TVqQ",
        "--b--",
      );
      const served = await sendToServe(message);
      expect({ field, reply: served.reply.slice(0, 9), rule: served.rule }).toEqual({ field, reply: "550 5.7.1", rule: "no-exe" });
      const dry = await dryRun(message);
      expect(dry.decision.rule).toBe("no-exe");
      expect(dry.facts.attachments).toEqual(["x.exe\u0000.pdf", "x.exe"]);
    }
  }, 30_000);

  test("every From address counts for a `from` rule: a second one (in the list or a second field) is not hidden", async () => {
    for (const from of ['From: "Doe, John" <john@sender.example>, CEO@company.com', "From: john@sender.example\r\nFrom: ceo@company.com"]) {
      const message = lines(from, "To: b@company.com", "Subject: wire transfer", "", "Please pay today.");
      const served = await sendToServe(message);
      expect(served.reply).toStartWith("550 5.7.1");
      expect(served.rule).toBe("ceo-spoof");
      const dry = await dryRun(message);
      expect(dry.decision.rule).toBe("ceo-spoof");
      expect(dry.facts.from).toBe("john@sender.example");
      expect(dry.facts.fromAll).toEqual(["john@sender.example", "ceo@company.com"]);
    }
  }, 30_000);

  test("--client-ip in IPv4-mapped or upper-case IPv6 form is taken as serve would record it", async () => {
    const message = lines("From: a@sender.example", "To: b@company.com", "Subject: from loopback", "", "hi");
    const served = await sendToServe(message);
    expect(served.rule).toBe("loopback-v4");
    const dry = await dryRun(message, ["--client-ip", "::FFFF:127.0.0.1"]);
    expect(dry.facts.clientIp).toBe("127.0.0.1");
    expect(dry.decision.rule).toBe("loopback-v4");
    expect(dry.facts.headers.received[0]).toStartWith("from client.example ([127.0.0.1])");
    const v6 = await dryRun(message, ["--client-ip", "2001:DB8:0:0::1"]);
    expect(v6.facts.clientIp).toBe("2001:db8::1");
  }, 30_000);

  test("size counts serve's Received: line exactly (a size rule decides at the same byte)", async () => {
    const message = lines("From: a@sender.example", "To: b@company.com", "Subject: sized", "", "x".repeat(100));
    const served = await sendToServe(message);
    const dry = await dryRun(message);
    expect(dry.facts.size).toBe(served.size);
    // Without --to the recipients come from the header To:, and so does the line's `for <…>`.
    const headerDefaults = await dryRun(message, [], []);
    expect(headerDefaults.facts.rcpt).toEqual(["b@company.com"]);
    expect(headerDefaults.facts.size).toBe(served.size);
    // One byte under serve's size: serve recorded it as over the limit, so must the dry run.
    writeFileSync(join(serve.dir, "sized.yaml"), RULES.replace("100MB", String((served.size ?? 0) - 1)));
    expect((await dryRun(message, ["--rules", "sized.yaml"])).decision.rule).toBe("over-size");
  }, 30_000);

  test("a file saved with LF line endings and an mbox 'From ' line: the dry run counts what an SMTP client sends", async () => {
    const message = lines("From: a@sender.example", "To: b@company.com", "Subject: sized", "", ...Array.from({ length: 40 }, (_, i) => `line ${i}`));
    const served = await sendToServe(message);
    expect(served.reply).toStartWith("250 ");
    // As saved by a mail client or cut from an mbox file: Unix line ends, a separator line first.
    const unix = `From a@sender.example Mon Nov 23 10:00:00 2026\n${message.replaceAll("\r\n", "\n")}`;
    const dry = await dryRun(unix);
    expect(dry.facts.size).toBe(served.size);
    expect(dry.facts.from).toBe("a@sender.example");
    expect(dry.inputNotes).toEqual([
      "the leading mbox 'From ' line was left out, as an SMTP client sends the message",
      "LF line endings counted as CRLF, as an SMTP client sends them",
    ]);
    // A file with CRLF is taken as it is.
    expect((await dryRun(message)).inputNotes).toEqual([]);
  }, 30_000);

  // Saved by a script or an editor without a final newline: every SMTP client ends the data with
  // CRLF before the final dot (RFC 5321 4.1.1.4), so serve has two more bytes than the file.
  test("a file without a line break at its end: the dry run counts the CRLF an SMTP client adds", async () => {
    const message = lines("From: a@sender.example", "To: b@company.com", "Subject: sized", "", "x".repeat(100));
    const served = await sendToServe(message);
    expect(served.reply).toStartWith("250 ");
    for (const file of [message.slice(0, -2), message.replaceAll("\r\n", "\n").slice(0, -1)]) {
      const dry = await dryRun(file);
      expect(dry.facts.size).toBe(served.size);
      expect(dry.inputNotes).toContain("no line break at the end: counted with the CRLF an SMTP client adds");
    }
  }, 30_000);

  test("size with a UTF-8 sender: serve's Received: says UTF8SMTP (RFC 6531), and the dry run counts it too", async () => {
    const message = lines("From: jörg@sender.example", "To: b@company.com", "Subject: sized", "", "x".repeat(100));
    const served = await sendToServe(message, "<jörg@sender.example> SMTPUTF8");
    expect(served.reply).toStartWith("250 ");
    const dry = await dryRun(message, [], ["--from", "jörg@sender.example", "--to", "b@company.com"]);
    expect(dry.facts.headers.received[0]).toContain("with UTF8SMTP");
    expect(dry.facts.size).toBe(served.size);
  }, 30_000);

  test("a recipient serve refuses at RCPT is not in the rcpt the dry run classifies on, nor in its Received line", async () => {
    const message = lines("From: a@sender.example", "To: b@company.com, c@other.example", "Subject: two", "", "hi");
    const served = await sendToServe(message, "<a@sender.example>", ["b@company.com", "c@other.example"]);
    expect(served.reply).toStartWith("250 ");
    expect(served.rule).toBeNull();
    for (const envelope of [["--from", "a@sender.example", "--to", "b@company.com", "--to", "c@other.example"], []]) {
      const dry = await dryRun(message, [], envelope);
      expect(dry.decision.rule).toBeNull();
      expect(dry.facts.rcpt).toEqual(["b@company.com"]);
      expect(dry.facts.size).toBe(served.size);
      expect(dry.refusedRecipients).toEqual([{ address: "c@other.example", reply: "550 5.7.1 Relaying denied" }]);
    }
    const text = await runBinary(binary.bin, ["test", "dry-run.eml", "--rules", "rules.yaml"], { cwd: serve.dir });
    expect(text.stdout).toContain("note:     serve would refuse at RCPT <c@other.example> (550 5.7.1 Relaying denied)\n");
  }, 30_000);

  // A list expanded twice, or To: and a --to for the same mailbox: smtp-server keeps one entry
  // per address (any case), the later spelling in the earlier one's place. The dry run had both:
  // no `for <…>` in its Received line (size 24 bytes short) and a repeated rcpt.
  test("a recipient given twice (any case) is one recipient, as serve keeps it", async () => {
    const message = lines("From: a@sender.example", "To: b@company.com, B@company.com", "Subject: sized", "", "x".repeat(100));
    const served = await sendToServe(message, "<a@sender.example>", ["b@company.com", "B@Company.com"]);
    expect(served.reply).toStartWith("250 ");
    const dry = await dryRun(message, [], ["--from", "a@sender.example", "--to", "b@company.com", "--to", "B@Company.com"]);
    expect(dry.facts.rcpt).toEqual(["B@company.com"]);
    expect(dry.facts.size).toBe(served.size);
    // The default recipients, from To: (header addresses are compared in lower case).
    const fromHeader = await dryRun(message, [], ["--from", "a@sender.example"]);
    expect(fromHeader.facts.rcpt).toEqual(["b@company.com"]);
    expect(fromHeader.facts.size).toBe(served.size);
  }, 30_000);

  // Without --from the envelope sender is the header From: a UTF-8 one is sent with SMTPUTF8,
  // so serve's Received line says UTF8SMTP, with or without --to.
  test("size with a UTF-8 header From and no --from: the dry run's Received: says UTF8SMTP as serve's does", async () => {
    const message = lines("From: jörg@sender.example", "To: b@company.com", "Subject: sized", "", "x".repeat(100));
    const served = await sendToServe(message, "<jörg@sender.example> SMTPUTF8");
    expect(served.reply).toStartWith("250 ");
    for (const envelope of [[], ["--to", "b@company.com"]]) {
      const dry = await dryRun(message, [], envelope);
      expect(dry.facts.mailFrom).toBe("jörg@sender.example");
      expect(dry.facts.headers.received[0]).toContain("with UTF8SMTP");
      expect(dry.facts.size).toBe(served.size);
    }
  }, 30_000);

  // serve names the negotiated TLS version and cipher in its Received line; `--tls` writes the
  // line of the usual TLS 1.3 session, so `size` and `header:received` decide alike. The client is
  // Python's smtplib (OpenSSL, as Postfix and Exim): Bun's own TLS client negotiates AES-128.
  test.skipIf(!PYTHON)("--tls: the dry run's Received: line is serve's after STARTTLS from an OpenSSL client (ESMTPS, TLS version, cipher), and size counts it exactly", async () => {
    const message = lines("From: a@sender.example", "To: b@company.com", "Subject: sized", "", "x".repeat(100));
    const client = [
      "import smtplib, ssl, sys",
      "ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE",
      "s = smtplib.SMTP('127.0.0.1', int(sys.argv[1])); s.ehlo('client.example'); s.starttls(context=ctx); s.ehlo('client.example')",
      "s.sendmail('a@sender.example', ['b@company.com'], sys.stdin.buffer.read()); s.quit()",
    ].join("\n");
    const sent = Bun.spawn([PYTHON ?? "python3", "-c", client, String(serve.smtpPort)], { stdin: Buffer.from(message), stdout: "pipe", stderr: "pipe" });
    expect({ exit: await sent.exited, stderr: await new Response(sent.stderr).text() }).toEqual({ exit: 0, stderr: "" });
    const db = new Database(join(serve.dir, "data", "mail-gateway.db"), { readonly: true });
    const row = db.query<{ id: string; size: number }, []>("SELECT id, size FROM messages ORDER BY received_at DESC, rowid DESC LIMIT 1").get();
    db.close();
    const stored = (await archivedCopy(serve.dir, row?.id ?? ""))?.toString("latin1") ?? "";
    // serve's first field, unfolded as the facts show it; the id and the date differ per message.
    const received = /^Received: ((?:.|\r\n\t)*)\r\n(?!\t)/.exec(stored)?.[1]?.replaceAll("\r\n", "") ?? "";
    const masked = (line: string) => line.replace(/\tid \S+/, "\tid ID").replace(/;\t.*$/, ";\tDATE");
    expect(received).toContain("with ESMTPS\t(version=TLSv1.3 cipher=");
    const dry = await dryRun(message, ["--tls"]);
    expect(masked(dry.facts.headers.received[0])).toBe(masked(received));
    expect(dry.facts.size).toBe(row?.size);
  }, 30_000);

  test("a reject rule without reject_message: the dry run shows the reply serve sends", async () => {
    const message = lines("From: a@sender.example", "To: b@company.com", "Subject: offer", "", "cheap viagra");
    const served = await sendToServe(message);
    expect(served.reply).toStartWith("550 5.7.1 ");
    await dryRun(message);
    const text = await runBinary(binary.bin, ["test", "dry-run.eml", "--rules", "rules.yaml"], { cwd: serve.dir });
    expect(text.stdout).toContain(`decision: reject  rule=no-viagra  category=no-viagra  reply="${served.reply.trim()}"\n`);
  }, 30_000);

  test("size with a UTF-8 recipient domain: the client declared SMTPUTF8, so the dry run's Received: says UTF8SMTP too", async () => {
    const message = lines("From: a@sender.example", "To: info@bücher.example", "Subject: sized", "", "x".repeat(100));
    const served = await sendToServe(message, "<a@sender.example> SMTPUTF8", ["info@bücher.example"]);
    expect(served.reply).toStartWith("250 ");
    for (const envelope of [["--from", "a@sender.example", "--to", "info@bücher.example"], []]) {
      const dry = await dryRun(message, [], envelope);
      expect(dry.facts.rcpt).toEqual(["info@xn--bcher-kva.example"]);
      expect(dry.facts.headers.received[0]).toContain("with UTF8SMTP");
      expect(dry.facts.size).toBe(served.size);
    }
  }, 30_000);

  test("an IDN domain in a rule matches an address written in either form (UTF-8 or xn--), in the envelope and the header", async () => {
    const message = lines("From: verkauf@xn--bcher-kva.example", "To: info@BÜCHER.example", "Subject: idn", "", "hallo");
    const served = await sendToServe(message, "<a@sender.example> SMTPUTF8", ["info@bücher.example"]);
    expect(served.reply).toStartWith("250 ");
    expect(served.rule).toBe("idn-shop");
    const dry = await dryRun(message, [], ["--from", "a@sender.example", "--to", "info@bücher.example"]);
    expect(dry.decision.rule).toBe("idn-shop");
    expect(dry.facts.to).toEqual(["info@bücher.example"]); // shown as written
  }, 30_000);

  test("more than 50 Received: lines: serve answers 554 5.4.6, and the dry run says it would", async () => {
    const hops = Array.from({ length: 51 }, (_, i) => `Received: from hop${i}.example by hop${i + 1}.example; Mon, 1 Jan 2024 00:00:00 +0000`);
    const message = lines(...hops, "From: a@sender.example", "To: b@company.com", "Subject: loop", "", "round and round");
    const served = await sendToServe(message);
    expect(served.reply).toStartWith("554 5.4.6 ");
    const dry = await dryRun(message);
    expect(dry.refusedMessage).toBe(served.reply.trim());
    const text = await runBinary(binary.bin, ["test", "dry-run.eml", "--rules", "rules.yaml"], { cwd: serve.dir });
    expect(text.stdout).toContain(`serve would refuse this message after DATA, before the rules: ${served.reply.trim()}`);
    expect((await dryRun(lines(...hops.slice(1), "Subject: fifty", "", "x"))).refusedMessage).toBeNull();
  }, 30_000);

  test("a first line starting with a space is kept out of serve's Received: line, in the dry run too", async () => {
    const message = lines(" (internal) by trusted.example; Mon, 1 Jan 2001 00:00:00 +0000", "From: a@sender.example", "To: b@company.com", "Subject: sized", "", "hi");
    const served = await sendToServe(message);
    expect(served.reply).toStartWith("250 ");
    expect(served.rule).toBeNull();
    const dry = await dryRun(message);
    expect(dry.decision.rule).toBeNull();
    expect(dry.facts.headers.received).toHaveLength(1);
    expect(dry.facts.size).toBe(served.size);
  }, 30_000);
});
