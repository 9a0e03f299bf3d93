/**
 * How long DKIM verification of one big signed message holds the event loop: authenticate()
 * (src/parse/authenticate.ts, what serve runs when a rule reads spf/dkim/dmarc) on a message of
 * --mb MB signed with a throwaway 2048-bit key, its DNS answered from a table (no network),
 * while a 1 ms interval timer records the gaps between its ticks. Prints the verification time
 * and the longest gaps: the delay any other session's reply could see.
 *
 * Usage: bun bench/dkim-stall.ts [--mb 24.5] [--runs 3]
 */
import { generateKeyPairSync } from "node:crypto";
import { parseArgs } from "node:util";
import { dkimSign } from "mailauth";
import { authenticate, type DNSResolver } from "../src/parse/authenticate.ts";

const { values } = parseArgs({ options: { mb: { type: "string", default: "24.5" }, runs: { type: "string", default: "3" } } });
const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const dns: Record<string, string[][]> = {
  "sender.org/TXT": [["v=spf1 ip4:192.0.2.10 -all"]],
  "bench._domainkey.sender.org/TXT": [[`v=DKIM1; k=rsa; p=${publicKey.export({ type: "spki", format: "der" }).toString("base64")}`]],
  "_dmarc.sender.org/TXT": [["v=DMARC1; p=reject"]],
};
const resolver: DNSResolver = async (domain, rrtype) => {
  const answer = dns[`${domain.toLowerCase()}/${rrtype}`];
  if (!answer) throw Object.assign(new Error(`ENOTFOUND ${domain}`), { code: "ENOTFOUND" });
  return answer;
};
const line = "The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuv\r\n";
const head = "From: Bench <bench@sender.org>\r\nTo: inbox@company.com\r\nSubject: big\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <big@sender.org>\r\n\r\n";
const plain = head + line.repeat(Math.ceil((Number(values.mb) * 1024 * 1024) / line.length));
const key = { signingDomain: "sender.org", selector: "bench", privateKey: privateKey.export({ type: "pkcs8", format: "pem" }) as string };
const { signatures } = await dkimSign(plain, { ...key, signatureData: [key] });
const raw = new TextEncoder().encode(signatures + plain);
const envelope = { mailFrom: "bench@sender.org", rcptTo: ["inbox@company.com"], clientIp: "192.0.2.10", helo: "mx.sender.org", tls: false };

for (let run = 1; run <= Number(values.runs); run++) {
  const gaps: number[] = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    gaps.push(now - last);
    last = now;
  }, 1);
  const t0 = performance.now();
  const results = await authenticate(raw, envelope, { resolver, timeoutMs: 30_000 });
  const ms = performance.now() - t0;
  clearInterval(timer);
  gaps.push(performance.now() - last);
  gaps.sort((a, b) => b - a);
  console.log(`run ${run}: ${(raw.byteLength / 1048576).toFixed(1)} MB, ${JSON.stringify(results)}, ${ms.toFixed(0)} ms; longest event-loop gaps ${gaps.slice(0, 3).map((g) => g.toFixed(1)).join(" / ")} ms`);
}
