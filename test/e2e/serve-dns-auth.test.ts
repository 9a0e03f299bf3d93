/**
 * SPF/DKIM/DMARC in the compiled `mailgw serve` against a real DNS server: serve runs in a
 * private mount namespace whose /etc/resolv.conf names a DNS server this test runs on a
 * loopback address (port 53), so the system resolver path is the one used in production.
 * The rules reject with the three results in the reply, so the client sees what the rules saw.
 * Needs root (mount namespace, port 53); skipped with the reason otherwise.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { userInfo } from "node:os";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { dkimSign } from "mailauth";
import nodemailer from "nodemailer";
import { startDnsServer, type DnsEntry, type DnsServer } from "../helpers/dns-server.ts";
import { cleanupBinary, serveDir, startServe, until, type ServeProcess } from "../smtp/serve-process.ts";

const RESULTS = ["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"];

function skipReason(): string | null {
  if (userInfo().uid !== 0) return "not root (needs a mount namespace for /etc/resolv.conf and port 53)";
  const probe = spawnSync("unshare", ["--mount", "--propagation", "private", "true"]);
  return probe.status === 0 ? null : `unshare --mount failed: ${probe.stderr?.toString().trim()}`;
}
const SKIP = skipReason();
if (SKIP) console.warn(`skip serve-dns-auth: ${SKIP}`);

/** One reject rule per combination, its message naming the three results. */
function rulesYaml(): string {
  const lines = [
    "domains: [company.test]",
    "default: { action: archive, category: default }",
    "rules:",
    // Accepted, so the session line of a stored message is seen too.
    "  - name: keep-passing",
    "    priority: 100",
    "    action: archive",
    "    conditions: [{ field: subject, operator: equals, value: keep }, { field: spf, operator: equals, value: pass }]",
  ];
  for (const spf of RESULTS) for (const dkim of RESULTS) for (const dmarc of RESULTS) {
    lines.push(
      `  - name: auth-${spf}-${dkim}-${dmarc}`,
      "    action: reject",
      `    reject_message: "auth spf=${spf} dkim=${dkim} dmarc=${dmarc}"`,
      `    conditions: [{ field: spf, operator: equals, value: ${spf} }, { field: dkim, operator: equals, value: ${dkim} }, { field: dmarc, operator: equals, value: ${dmarc} }]`,
    );
  }
  return `${lines.join("\n")}\n`;
}

const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const PUBLIC_KEY_B64 = publicKey.export({ type: "spki", format: "der" }).toString("base64");

const MESSAGE = [
  "From: Alice <alice@example.org>",
  "To: sales@company.test",
  "Subject: signed",
  "Date: Mon, 01 Jan 2024 00:00:00 +0000",
  "Message-ID: <signed@example.org>",
  "",
  "Hello.",
  "",
].join("\r\n");

async function signed(selector = "sel", message = MESSAGE, signingDomain = "example.org"): Promise<string> {
  const key = { signingDomain, selector, privateKey: privateKey.export({ type: "pkcs8", format: "pem" }) };
  return (await dkimSign(message, { ...key, signatureData: [key] })).signatures + message;
}

const ZONE: Record<string, DnsEntry> = {
  "example.org": { txt: ["v=spf1 ip4:127.0.0.0/8 -all"] },
  // A 2048-bit key is longer than 255 bytes: one TXT record of two strings, as every DNS host publishes it.
  "sel._domainkey.example.org": { txt: [`v=DKIM1; k=rsa; p=${PUBLIC_KEY_B64}`] },
  "_dmarc.example.org": { txt: ["v=DMARC1; p=reject"] },
  // SPF and the DKIM key answer SERVFAIL (a passing DNS trouble of the sender's); DMARC answers.
  "flaky.example": { rcode: 2 },
  "sel._domainkey.flaky.example": { rcode: 2 },
  "_dmarc.flaky.example": { txt: ["v=DMARC1; p=reject"] },
  // Strict SPF alignment: only strict.example itself aligns; mail.strict.example sends.
  "strict.example": { txt: ["v=spf1 -all"] },
  "mail.strict.example": { txt: ["v=spf1 ip4:127.0.0.0/8 -all"] },
  "_dmarc.strict.example": { txt: ["v=DMARC1; p=reject; aspf=s"] },
  // A domain spoofed in From: below.
  "bank.example": { txt: ["v=spf1 -all"] },
  "_dmarc.bank.example": { txt: ["v=DMARC1; p=reject"] },
  // SPF through an include: whose target answers SERVFAIL (flaky.example above).
  "incflaky.example.org": { txt: ["v=spf1 include:flaky.example -all"] },
  // An ESP's SPF record names the domain it is evaluated for with %{d}: here _spf.esp.example
  // (RFC 7208 §7.3, §5.2), never the sender's esp.example.org (mailauth 4 expanded it so: fail).
  "esp.example.org": { txt: ["v=spf1 include:_spf.esp.example -all"] },
  "_spf.esp.example": { txt: ["v=spf1 exists:%{i}._ip.%{d} -all"] },
  "127.0.0.1._ip._spf.esp.example": { a: ["127.0.0.2"] },
  // A host name written fully qualified, with its trailing dot (mailauth 4: permerror).
  "tdot.example.org": { txt: ["v=spf1 a:host.tdot.example.org. -all"] },
  "host.tdot.example.org": { a: ["127.0.0.1"] },
  // The DNS server of this key never answers.
  "down._domainkey.example.org": { silent: true },
  // An SPF record of 20 networks, the client's last: past the first 255-byte string.
  "long.example.org": { txt: [`v=spf1 ${Array.from({ length: 20 }, (_, i) => `ip4:198.51.${i}.0/24`).join(" ")} ip4:127.0.0.0/8 -all`] },
};

let dns: DnsServer;
let serve: ServeProcess;

beforeAll(async () => {
  if (SKIP) return;
  // A loopback address of its own, so parallel runs (and a local resolver on 127.0.0.53) do not collide.
  const host = `127.53.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
  dns = await startDnsServer(ZONE, host, 53);
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), rulesYaml());
  writeFileSync(join(dir, "resolv.conf"), `nameserver ${host}\n`);
  const inNamespace = ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"', join(dir, "resolv.conf")];
  serve = await startServe("binary", dir, { SMTP_HOSTNAME: "mx.company.test" }, 20_000, inNamespace);
}, 60_000);
afterAll(async () => {
  if (serve && serve.proc.exitCode === null) await serve.stop();
  await dns?.close();
  cleanupBinary();
}, 60_000);

async function send(raw: string, from = "alice@example.org"): Promise<string> {
  const transport = nodemailer.createTransport({ host: "127.0.0.1", port: serve.smtpPort, secure: false, ignoreTLS: true, name: "mail.example.org" });
  try {
    const info = await transport.sendMail({ envelope: { from, to: ["sales@company.test"] }, raw });
    return info.response;
  } catch (err) {
    return String((err as { response?: string }).response ?? err);
  } finally {
    transport.close();
  }
}

describe("serve: SPF/DKIM/DMARC through the system resolver", () => {
  test.skipIf(SKIP !== null)("a message signed with a 2048-bit key (a TXT record of two strings) passes DKIM, and so DMARC", async () => {
    expect(await send(await signed())).toBe("550 5.7.1 auth spf=pass dkim=pass dmarc=pass");
    expect(dns.queries).toContain("sel._domainkey.example.org/TXT");
  });

  test.skipIf(SKIP !== null)("a DKIM key server that never answers: DKIM is temperror within the deadline, SPF's aligned pass still stands (and so DMARC's)", async () => {
    const started = performance.now();
    expect(await send(await signed("down"))).toBe("550 5.7.1 auth spf=pass dkim=temperror dmarc=pass");
    expect(performance.now() - started).toBeLessThan(8000);
  });

  test.skipIf(SKIP !== null)("the session's log line says what the checks gave, for a stored and for a rejected message", async () => {
    const reply = await send(await signed("sel", MESSAGE.replace("Subject: signed", "Subject: keep")));
    expect(reply).toStartWith("250 2.0.0 Queued as ");
    const id = reply.split(" ").pop();
    await until("the stored message's session line", async () => serve.logs.some((l) => l.msg === "smtp session" && l.id === id));
    expect(serve.logs.find((l) => l.msg === "smtp session" && l.id === id)).toMatchObject({ auth: "spf=pass dkim=pass dmarc=pass", decision: "archive" });
    await send(MESSAGE, "bounces@long.example.org");
    const rejected = (l: Record<string, unknown>) => l.msg === "smtp session" && l.decision === "reject" && l.from === "bounces@long.example.org";
    await until("the rejected message's session line", async () => serve.logs.some(rejected));
    expect(serve.logs.find(rejected)).toMatchObject({ auth: "spf=pass dkim=none dmarc=pass", rule: "auth-pass-none-pass" });
    expect(serve.logs.find((l) => l.msg === "message rejected" && l.rule === "auth-pass-none-pass")).toMatchObject({ auth: "spf=pass dkim=none dmarc=pass" });
  });

  test.skipIf(SKIP !== null)("SERVFAIL for SPF and the DKIM key: DMARC is temperror, not fail (a dmarc-fail reject rule must not refuse it for good)", async () => {
    const flaky = MESSAGE.replace("From: Alice <alice@example.org>", "From: Alice <alice@flaky.example>");
    expect(await send(await signed("sel", flaky, "flaky.example"), "alice@flaky.example")).toBe("550 5.7.1 auth spf=temperror dkim=temperror dmarc=temperror");
  });

  test.skipIf(SKIP !== null)("a spoof whose own envelope domain and signature answer SERVFAIL is dmarc=fail, not temperror", async () => {
    const spoof = MESSAGE.replace("From: Alice <alice@example.org>", "From: Boss <boss@bank.example>");
    expect(await send(await signed("sel", spoof, "flaky.example"), "alice@flaky.example")).toBe("550 5.7.1 auth spf=temperror dkim=temperror dmarc=fail");
  });

  test.skipIf(SKIP !== null)("a second From field put on top of a signed message is dmarc=fail, not none", async () => {
    // The signature (and the aligned SPF pass) vouch for example.org only; the reader sees bank.example first.
    const added = (await signed()).replace("From: Alice", "From: Boss <boss@bank.example>\r\nFrom: Alice");
    expect(await send(added)).toBe("550 5.7.1 auth spf=pass dkim=pass dmarc=fail");
  });

  test.skipIf(SKIP !== null)("aspf=s: an SPF pass for a subdomain of the From domain does not align", async () => {
    const strict = MESSAGE.replace("From: Alice <alice@example.org>", "From: Alice <alice@strict.example>");
    expect(await send(strict, "bounces@mail.strict.example")).toBe("550 5.7.1 auth spf=pass dkim=none dmarc=fail");
  });

  test.skipIf(SKIP !== null)("an SPF include: whose target answers SERVFAIL is temperror, not fail", async () => {
    expect(await send(await signed(), "bounces@incflaky.example.org")).toBe("550 5.7.1 auth spf=temperror dkim=pass dmarc=pass");
  });

  test.skipIf(SKIP !== null)("an include: whose record uses %{d} expands it to the included domain: pass, not a false fail", async () => {
    // Relaxed alignment with From: example.org, so DMARC passes on SPF alone.
    expect(await send(MESSAGE, "bounces@esp.example.org")).toBe("550 5.7.1 auth spf=pass dkim=none dmarc=pass");
    expect(dns.queries).toContain("127.0.0.1._ip._spf.esp.example/A");
  });

  test.skipIf(SKIP !== null)("a mechanism's host name with a trailing dot (a:host.example.) is valid: pass, not permerror", async () => {
    expect(await send(MESSAGE, "bounces@tdot.example.org")).toBe("550 5.7.1 auth spf=pass dkim=none dmarc=pass");
  });

  test.skipIf(SKIP !== null)("a 3 MB signed message (verified in slices) passes DKIM; the same with one body byte changed does not", async () => {
    const line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n";
    const big = MESSAGE.replace("Hello.\r\n", line.repeat(Math.ceil((3 * 1024 * 1024) / line.length)));
    const raw = await signed("sel", big);
    expect(raw.length).toBeGreaterThan(3 * 1024 * 1024);
    expect(await send(raw)).toBe("550 5.7.1 auth spf=pass dkim=pass dmarc=pass");
    // Past the first slices: the body hash must cover every slice.
    const at = raw.length - 1000;
    const tampered = `${raw.slice(0, at)}X${raw.slice(at + 1)}`;
    // mailauth (as Gmail) words a body hash mismatch "neutral"; DMARC passes on aligned SPF alone.
    expect(await send(tampered)).toBe("550 5.7.1 auth spf=pass dkim=neutral dmarc=pass");
  });

  test.skipIf(SKIP !== null)("a DKIM signature whose l= is past the body's end prints nothing raw into the JSON log stream", async () => {
    // mailauth prints "TOTAL <n> EXPECTING <l>" with console.log for such a signature.
    const raw = (await signed("sel", MESSAGE.replace("Subject: signed", "Subject: keep"))).replace("DKIM-Signature: ", "DKIM-Signature: l=50000; ");
    const reply = await send(raw);
    expect(reply).toStartWith("250 2.0.0 Queued as ");
    const id = reply.split(" ").pop();
    await until("the session line", async () => serve.logs.some((l) => l.msg === "smtp session" && l.id === id));
    expect(serve.logs.filter((l) => String(l.msg).includes("EXPECTING"))).toEqual([]);
    // Every line on stdout was a JSON log line (startServe keeps any other line as { msg: line }).
    expect(serve.logs.every((l) => typeof l.level === "string")).toBe(true);
  });

  test.skipIf(SKIP !== null)("an SPF record longer than 255 bytes is read whole", async () => {
    // long.example.org is aligned with From: example.org (relaxed), so DMARC passes on SPF alone.
    expect(await send(MESSAGE, "bounces@long.example.org")).toBe("550 5.7.1 auth spf=pass dkim=none dmarc=pass");
  });
});
