/**
 * authenticate(): SPF/DKIM/DMARC through mailauth against a fixed DNS table (a resolver
 * function, i.e. DNS data, not a mock of anything the gateway runs), and the deadline:
 * a resolver that never answers yields "temperror" within the timeout.
 */
import { describe, expect, test } from "bun:test";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { dkimSign } from "mailauth";
import { authenticate, DKIM_SLICE_BYTES, type DNSResolver } from "../../src/parse/authenticate.ts";
import type { Envelope } from "../../src/types.ts";

const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const PUBLIC_KEY_B64 = publicKey.export({ type: "spki", format: "der" }).toString("base64");

const DNS: Record<string, string[][]> = {
  "example.org/TXT": [["v=spf1 ip4:192.0.2.10 -all"]],
  "sel._domainkey.example.org/TXT": [[`v=DKIM1; k=rsa; p=${PUBLIC_KEY_B64}`]],
  "_dmarc.example.org/TXT": [["v=DMARC1; p=reject"]],
};

function notFound(domain: string): Error {
  return Object.assign(new Error(`queryTxt ENOTFOUND ${domain}`), { code: "ENOTFOUND" });
}

const tableResolver: DNSResolver = async (domain, rrtype) => {
  const answer = DNS[`${domain.toLowerCase()}/${rrtype}`];
  if (!answer) throw notFound(domain);
  return answer;
};

const MESSAGE = [
  "From: Alice <alice@example.org>",
  "To: sales@company.com",
  "Subject: signed",
  "Date: Mon, 01 Jan 2024 00:00:00 +0000",
  "Message-ID: <signed@example.org>",
  "",
  "Hello.",
  "",
].join("\r\n");

async function signed(): Promise<Uint8Array> {
  const key = { signingDomain: "example.org", selector: "sel", privateKey: privateKey.export({ type: "pkcs8", format: "pem" }) };
  // mailauth signs what is listed in signatureData; its .d.ts also demands the top-level keys
  const result = await dkimSign(MESSAGE, { ...key, signatureData: [key] });
  if (result.signatures.split("DKIM-Signature:").length !== 2) throw new Error(`expected one signature: ${result.signatures}`);
  return new TextEncoder().encode(result.signatures + MESSAGE);
}

/** The message signed by each key, in order: the first key's DKIM-Signature comes first. */
async function signedBy(keys: { domain: string; selector: string; key: KeyObject }[]): Promise<Uint8Array> {
  let raw = MESSAGE;
  // Signing the signed message again puts the new signature on top: sign the last one first.
  for (const k of [...keys].reverse()) {
    const key = { signingDomain: k.domain, selector: k.selector, privateKey: k.key.export({ type: "pkcs8", format: "pem" }) };
    raw = (await dkimSign(raw, { ...key, signatureData: [key] })).signatures + raw;
  }
  return new TextEncoder().encode(raw);
}

function envelope(clientIp: string): Envelope {
  return { mailFrom: "alice@example.org", rcptTo: ["sales@company.com"], clientIp, helo: "mail.example.org", tls: true };
}

describe("authenticate", () => {
  test("aligned SPF and DKIM pass, so DMARC passes", async () => {
    const results = await authenticate(await signed(), envelope("192.0.2.10"), { resolver: tableResolver, timeoutMs: 5000 });
    expect(results).toEqual({ spf: "pass", dkim: "pass", dmarc: "pass" });
  });

  test("wrong client address fails SPF; a modified body breaks DKIM; DMARC fails", async () => {
    const raw = new TextDecoder().decode(await signed()).replace("Hello.", "Hello, changed.");
    const results = await authenticate(new TextEncoder().encode(raw), envelope("198.51.100.1"), { resolver: tableResolver, timeoutMs: 5000 });
    expect(results.spf).toBe("fail");
    expect(results.dkim).toBe("neutral"); // mailauth: "body hash did not verify" is neutral, not fail
    expect(results.dmarc).toBe("fail");
  });

  test("unsigned message from a domain without records: none", async () => {
    const raw = new TextEncoder().encode(MESSAGE.replaceAll("example.org", "nodns.example"));
    const results = await authenticate(raw, { ...envelope("192.0.2.10"), mailFrom: "alice@nodns.example" }, { resolver: tableResolver, timeoutMs: 5000 });
    expect(results).toEqual({ spf: "none", dkim: "none", dmarc: "none" });
  });

  test("a resolver that never answers gives temperror within the deadline", async () => {
    const silent: DNSResolver = () => new Promise(() => {});
    const started = performance.now();
    const results = await authenticate(await signed(), envelope("192.0.2.10"), { resolver: silent, timeoutMs: 200 });
    expect(results).toEqual({ spf: "temperror", dkim: "temperror", dmarc: "temperror" });
    expect(performance.now() - started).toBeLessThan(2000);
  });

  test("a DKIM key lookup that never answers leaves SPF's finished result standing; only DKIM and DMARC are temperror", async () => {
    const keyServerDown: DNSResolver = (domain, rrtype) => domain.includes("._domainkey.") ? new Promise(() => {}) : tableResolver(domain, rrtype);
    const started = performance.now();
    const results = await authenticate(await signed(), envelope("192.0.2.10"), { resolver: keyServerDown, timeoutMs: 300 });
    expect(results).toEqual({ spf: "pass", dkim: "temperror", dmarc: "temperror" });
    expect(performance.now() - started).toBeLessThan(2000);
  });

  test("the null sender <> is checked with the HELO identity (RFC 7208 §2.3)", async () => {
    const bounce = { ...envelope("192.0.2.10"), mailFrom: "", helo: "example.org" };
    expect((await authenticate(await signed(), bounce, { resolver: tableResolver, timeoutMs: 5000 })).spf).toBe("pass");
    expect((await authenticate(await signed(), { ...bounce, clientIp: "198.51.100.1" }, { resolver: tableResolver, timeoutMs: 5000 })).spf).toBe("fail");
  });

  test("a resolver that throws SERVFAIL gives temperror, not a throw", async () => {
    const failing: DNSResolver = async () => {
      throw Object.assign(new Error("SERVFAIL"), { code: "ESERVFAIL" });
    };
    const results = await authenticate(await signed(), envelope("192.0.2.10"), { resolver: failing, timeoutMs: 5000 });
    expect(results.spf).toBe("temperror");
    expect(results.dkim).toBe("temperror");
  });

  test("DMARC that fails only because SPF and DKIM could not be checked for now is temperror, not fail", async () => {
    // The domain's own TXT (SPF) and its DKIM key answer SERVFAIL; its DMARC record answers.
    const flaky: DNSResolver = async (domain, rrtype) => {
      if (domain === "example.org" || domain.includes("._domainkey.")) throw Object.assign(new Error("SERVFAIL"), { code: "ESERVFAIL" });
      return tableResolver(domain, rrtype);
    };
    const results = await authenticate(await signed(), envelope("192.0.2.10"), { resolver: flaky, timeoutMs: 5000 });
    expect(results).toEqual({ spf: "temperror", dkim: "temperror", dmarc: "temperror" });
    // A real failure stays a failure (see the modified-body test above).
  });

  test("an include: or redirect= whose DNS fails is temperror, not fail or neutral (RFC 7208 §5.2, §6.1)", async () => {
    // The include's target answers SERVFAIL (or its server is unreachable) for a moment.
    const table: Record<string, string[][]> = {
      "inc.example/TXT": [["v=spf1 include:_spf.provider.example -all"]],
      "redir.example/TXT": [["v=spf1 redirect=_spf.provider.example"]],
    };
    const check = async (code: string, domain: string) => {
      const resolver: DNSResolver = async (name, rrtype) => {
        if (name === "_spf.provider.example") throw Object.assign(new Error(code), { code });
        const answer = table[`${name}/${rrtype}`];
        if (!answer) throw notFound(name);
        return answer;
      };
      return (await authenticate(await signed(), { ...envelope("192.0.2.10"), mailFrom: `alice@${domain}` }, { resolver, timeoutMs: 5000 })).spf;
    };
    for (const code of ["ESERVFAIL", "ECONNREFUSED", "EBADRESP"]) {
      expect(await check(code, "inc.example")).toBe("temperror");
      expect(await check(code, "redir.example")).toBe("temperror");
    }
    // A target that does not exist stays a permanent error.
    expect(await check("ENOTFOUND", "inc.example")).toBe("permerror");
  });

  test("a key published for another service (s=other) is no DKIM pass (RFC 6376 §3.6.1)", async () => {
    // The key is not for email: its signature must not vouch for the From (mailauth 4: pass, and so DMARC pass).
    const table: Record<string, string[][]> = { ...DNS, "sel._domainkey.example.org/TXT": [[`v=DKIM1; k=rsa; s=other; p=${PUBLIC_KEY_B64}`]] };
    const resolver: DNSResolver = async (name, rrtype) => {
      const answer = table[`${name.toLowerCase()}/${rrtype}`];
      if (!answer) throw notFound(name);
      return answer;
    };
    expect(await authenticate(await signed(), envelope("198.51.100.9"), { resolver, timeoutMs: 5000 })).toEqual({ spf: "fail", dkim: "neutral", dmarc: "fail" });
    // The same key for every service (s=*) is one for email.
    table["sel._domainkey.example.org/TXT"] = [[`v=DKIM1; k=rsa; s=*; p=${PUBLIC_KEY_B64}`]];
    expect(await authenticate(await signed(), envelope("198.51.100.9"), { resolver, timeoutMs: 5000 })).toEqual({ spf: "fail", dkim: "pass", dmarc: "pass" });
  });

  describe("several DKIM signatures, and a weak key", () => {
    // other.example publishes a key that is not the one it signs with (its signatures fail);
    // nokey.example publishes none (neutral); servfail.example's DNS fails (temperror); weak.example a 512-bit one (mailauth: "policy").
    const stranger = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const weak = generateKeyPairSync("rsa", { modulusLength: 512 });
    const der = (k: KeyObject) => k.export({ type: "spki", format: "der" }).toString("base64");
    const table: Record<string, string[][]> = {
      ...DNS,
      "sel._domainkey.other.example/TXT": [[`v=DKIM1; k=rsa; p=${PUBLIC_KEY_B64}`]],
      "sel._domainkey.weak.example/TXT": [[`v=DKIM1; k=rsa; p=${der(weak.publicKey)}`]],
    };
    const resolver: DNSResolver = async (domain, rrtype) => {
      if (domain.endsWith(".servfail.example")) throw Object.assign(new Error("SERVFAIL"), { code: "ESERVFAIL" });
      const answer = table[`${domain.toLowerCase()}/${rrtype}`];
      if (!answer) throw notFound(domain);
      return answer;
    };
    const own = { domain: "example.org", selector: "sel", key: privateKey };
    const failing = { domain: "other.example", selector: "sel", key: stranger.privateKey };
    const keyless = { domain: "nokey.example", selector: "sel", key: stranger.privateKey };
    const check = async (keys: Parameters<typeof signedBy>[0]) => (await authenticate(await signedBy(keys), envelope("192.0.2.10"), { resolver, timeoutMs: 5000 })).dkim;

    test("any signature that passes makes DKIM pass, whatever comes before it", async () => {
      expect(await check([failing, keyless, own])).toBe("pass");
    });

    test("without a pass, a failing signature is the verdict even when another one comes first", async () => {
      expect(await check([failing])).toBe("fail");
      expect(await check([keyless])).toBe("neutral");
      expect(await check([keyless, failing])).toBe("fail");
      // Neither: the topmost signature's result.
      const unanswered = { domain: "servfail.example", selector: "sel", key: stranger.privateKey };
      expect(await check([keyless, unanswered])).toBe("neutral");
      expect(await check([unanswered, keyless])).toBe("temperror");
    });

    test("a key below 1024 bits (mailauth's policy result) is a fail, not a pass", async () => {
      expect(await check([{ domain: "weak.example", selector: "sel", key: weak.privateKey }])).toBe("fail");
    });
  });

  test("a big signed message passes DKIM without holding the event loop for the whole body", async () => {
    // 4 MB of body: 16 slices. Before, the body was hashed in one task (one turn of the loop).
    const line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n";
    const big = MESSAGE.replace("Hello.\r\n", line.repeat(Math.ceil((16 * DKIM_SLICE_BYTES) / line.length)));
    const key = { signingDomain: "example.org", selector: "sel", privateKey: privateKey.export({ type: "pkcs8", format: "pem" }) };
    const { signatures } = await dkimSign(big, { ...key, signatureData: [key] });
    const raw = new TextEncoder().encode(signatures + big);
    expect(raw.byteLength).toBeGreaterThan(16 * DKIM_SLICE_BYTES);
    // Other work of the event loop (sessions, timers) counted by a task that re-queues itself.
    let turns = 0;
    let counting = true;
    const count = (): void => {
      turns++;
      if (counting) setImmediate(count);
    };
    setImmediate(count);
    const results = await authenticate(raw, envelope("192.0.2.10"), { resolver: tableResolver, timeoutMs: 30_000 });
    counting = false;
    expect(results).toEqual({ spf: "pass", dkim: "pass", dmarc: "pass" });
    expect(turns).toBeGreaterThanOrEqual(12);
  });
});
