/**
 * The `dmarc` verdict authenticate() gives, where mailauth 4 alone disagreed with RFC 7489 and
 * with an independent evaluation (pyspf + dkimpy + the RFC's alignment rules): several author
 * domains, strict alignment (mailauth ≥ 5 gets it right itself; these tests keep it so), and a
 * temperror that only an unaligned identifier caused. DNS comes
 * from a fixed table (DNS data, not a mock of anything the gateway runs).
 */
import { describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { dkimSign } from "mailauth";
import { authenticate, type DNSResolver } from "../../src/parse/authenticate.ts";
import { authorDomains, MAX_AUTHOR_DOMAINS } from "../../src/parse/dmarc-verdict.ts";
import type { Envelope } from "../../src/types.ts";

const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const KEY = `v=DKIM1; k=rsa; p=${publicKey.export({ type: "spki", format: "der" }).toString("base64")}`;

const DNS: Record<string, string[][]> = {
  "example.org/TXT": [["v=spf1 ip4:192.0.2.0/24 -all"]],
  "_dmarc.example.org/TXT": [["v=DMARC1; p=reject"]],
  "bank.example/TXT": [["v=spf1 -all"]],
  "_dmarc.bank.example/TXT": [["v=DMARC1; p=reject"]],
  "sel._domainkey.bank.example/TXT": [[KEY]],
  "mail.strict.example/TXT": [["v=spf1 ip4:192.0.2.0/24 -all"]],
  "_dmarc.strict.example/TXT": [["v=DMARC1; p=reject; aspf=s; adkim=s"]],
  "sel._domainkey.mail.strict.example/TXT": [[KEY]],
  "sel._domainkey.strict.example/TXT": [[KEY]],
};

/** Names under servfail.example (the sender's own zone, say) answer SERVFAIL. */
const resolver: DNSResolver = async (domain, rrtype) => {
  if (domain === "servfail.example" || domain.endsWith(".servfail.example")) throw Object.assign(new Error("SERVFAIL"), { code: "ESERVFAIL" });
  const answer = DNS[`${domain.toLowerCase()}/${rrtype}`];
  if (!answer) throw Object.assign(new Error(`ENOTFOUND ${domain}`), { code: "ENOTFOUND" });
  return answer;
};

function message(fromLines: string[]): string {
  return [...fromLines, "To: sales@company.test", "Subject: hello", "Date: Mon, 01 Jan 2024 00:00:00 +0000", "Message-ID: <m@example.org>", "", "Hello.", ""].join("\r\n");
}

async function signed(raw: string, signingDomain: string): Promise<string> {
  const key = { signingDomain, selector: "sel", privateKey: privateKey.export({ type: "pkcs8", format: "pem" }) };
  return (await dkimSign(raw, { ...key, signatureData: [key] })).signatures + raw;
}

async function dmarcOf(raw: string, mailFrom: string, clientIp = "192.0.2.10"): Promise<string> {
  const envelope: Envelope = { mailFrom, rcptTo: ["sales@company.test"], clientIp, helo: "mail.example.org", tls: false };
  return (await authenticate(new TextEncoder().encode(raw), envelope, { resolver, timeoutMs: 5000 })).dmarc;
}

describe("several author domains (RFC 7489 §6.6.1): each is checked, the worst verdict stands", () => {
  test("a From with a spoofed address next to one that passes is fail, in either order", async () => {
    expect(await dmarcOf(message(["From: a <a@example.org>, Boss <boss@bank.example>"]), "b@example.org")).toBe("fail");
    expect(await dmarcOf(message(["From: Boss <boss@bank.example>, a <a@example.org>"]), "b@example.org")).toBe("fail");
  });

  test("a second From field put on top of a message is fail, not none", async () => {
    const raw = message(["From: Boss <boss@bank.example>", "From: a <a@example.org>"]);
    expect(await dmarcOf(raw, "b@example.org")).toBe("fail");
  });

  test("several addresses of one domain that passes: pass", async () => {
    expect(await dmarcOf(message(["From: a <a@example.org>, b <b@EXAMPLE.org.>"]), "b@example.org")).toBe("pass");
    expect(await dmarcOf(message(["From: a <a@example.org>", "From: b <b@example.org>"]), "b@example.org")).toBe("pass");
  });

  test("one domain passing and one without a policy: none (not every author is vouched for)", async () => {
    expect(await dmarcOf(message(["From: a <a@example.org>, c <c@nodmarc.example>"]), "b@example.org")).toBe("none");
  });

  test("no From address: none; more author domains than the cap: fail", async () => {
    expect(await dmarcOf(message(["From: undisclosed-recipients:;"]), "b@example.org")).toBe("none");
    const many = Array.from({ length: MAX_AUTHOR_DOMAINS + 1 }, (_, i) => `a@d${i}.example`).join(", ");
    expect(await dmarcOf(message([`From: ${many}`]), "b@example.org")).toBe("fail");
  });

  test("authorDomains: distinct, lower-case, without a trailing dot", () => {
    expect(authorDomains(["a@Example.ORG", "b@example.org.", "nobody", "c@other.example"])).toEqual(["example.org", "other.example"]);
  });
});

describe("strict alignment (aspf=s, adkim=s) means the same domain (RFC 7489 §3.1)", () => {
  test("SPF passing for a subdomain of the From domain does not align", async () => {
    expect(await dmarcOf(message(["From: a <a@strict.example>"]), "bounce@mail.strict.example")).toBe("fail");
  });

  test("a DKIM signature of a subdomain does not align; one of the From domain itself does", async () => {
    const raw = message(["From: a <a@strict.example>"]);
    expect(await dmarcOf(await signed(raw, "mail.strict.example"), "bounce@elsewhere.example", "198.51.100.9")).toBe("fail");
    expect(await dmarcOf(await signed(raw, "strict.example"), "bounce@elsewhere.example", "198.51.100.9")).toBe("pass");
  });
});

describe("temperror only when an identifier that could align was not checkable", () => {
  test("a spoof whose envelope domain's DNS fails is fail, not temperror", async () => {
    // SPF for servfail.example is temperror, but servfail.example could never vouch for bank.example.
    expect(await dmarcOf(message(["From: Boss <boss@bank.example>"]), "x@servfail.example")).toBe("fail");
  });

  test("a spoof carrying a signature of its own whose key lookup fails is fail, not temperror", async () => {
    const raw = await signed(message(["From: Boss <boss@bank.example>"]), "servfail.example");
    expect(await dmarcOf(raw, "x@bank.example", "198.51.100.9")).toBe("fail");
  });

  test("the From domain's own signature whose key lookup fails is temperror", async () => {
    const raw = await signed(message(["From: a <a@mail.servfail.example>"]), "servfail.example");
    const withPolicy: DNSResolver = (domain, rrtype) => domain === "_dmarc.mail.servfail.example" || domain === "_dmarc.servfail.example"
      ? Promise.resolve([["v=DMARC1; p=reject"]])
      : resolver(domain, rrtype);
    const envelope: Envelope = { mailFrom: "x@bank.example", rcptTo: ["sales@company.test"], clientIp: "198.51.100.9", helo: "h", tls: false };
    expect((await authenticate(new TextEncoder().encode(raw), envelope, { resolver: withPolicy, timeoutMs: 5000 })).dmarc).toBe("temperror");
  });
});
