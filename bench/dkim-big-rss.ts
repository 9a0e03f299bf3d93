/**
 * RSS growth of the compiled `mailgw serve` while it receives a big DKIM-signed message with
 * rules that read `dkim` (so SPF, DKIM and DMARC are checked before the reply): the issue's
 * "a 25 MB message accepted with RSS growth under 3× its size", with the one rule set that
 * reads the whole message on the event loop. serve runs in a private mount namespace whose
 * /etc/resolv.conf names a DNS server on a loopback address (as test/e2e/serve-dns-auth.test.ts
 * does), so the key comes from a real DNS answer. Needs root (mount namespace, port 53).
 *
 * Usage: bun bench/dkim-big-rss.ts [--mb 24.5] [--runs 3]
 * Prints, per message: the reply, the session line's rule and auth results, RSS before the
 * message, the peak during it (sampled every 5 ms from /proc), the growth and growth ÷ size.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { dkimSign } from "mailauth";
import nodemailer from "nodemailer";
import { startDnsServer } from "../test/helpers/dns-server.ts";
import { cleanupBinary, serveDir, startServe } from "../test/smtp/serve-process.ts";

const { values } = parseArgs({ options: { mb: { type: "string", default: "24.5" }, runs: { type: "string", default: "3" } } });

const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const line = "The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuv\r\n";
const head = "From: Bench <bench@example.org>\r\nTo: sales@company.test\r\nSubject: big\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <big@example.org>\r\n\r\n";
const plain = head + line.repeat(Math.ceil((Number(values.mb) * 1024 * 1024) / line.length));
const key = { signingDomain: "example.org", selector: "sel", privateKey: privateKey.export({ type: "pkcs8", format: "pem" }) as string };
const raw = (await dkimSign(plain, { ...key, signatureData: [key] })).signatures + plain;
const mb = Buffer.byteLength(raw) / 1048576;

const host = `127.53.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
const dns = await startDnsServer(
  {
    "example.org": { txt: ["v=spf1 ip4:127.0.0.0/8 -all"] },
    "sel._domainkey.example.org": { txt: [`v=DKIM1; k=rsa; p=${publicKey.export({ type: "spki", format: "der" }).toString("base64")}`] },
    "_dmarc.example.org": { txt: ["v=DMARC1; p=reject"] },
  },
  host,
  53,
);
const dir = serveDir();
writeFileSync(
  join(dir, "rules.yaml"),
  [
    "domains: [company.test]",
    "default: { action: archive, category: default }",
    "rules:",
    "  - name: dkim-pass",
    "    action: archive",
    "    category: signed",
    "    conditions: [{ field: dkim, operator: equals, value: pass }]",
    "",
  ].join("\n"),
);
writeFileSync(join(dir, "resolv.conf"), `nameserver ${host}\n`);
const inNamespace = ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"', join(dir, "resolv.conf")];
const serve = await startServe("binary", dir, { SMTP_HOSTNAME: "mx.company.test" }, 20_000, inNamespace);
const rssMb = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${serve.proc.pid}/status`, "utf8"))?.[1] ?? 0) / 1024;

const seen = new Set<Record<string, unknown>>();
try {
  console.log(`# ${mb.toFixed(1)} MB signed message, rules read dkim; compiled serve pid ${serve.proc.pid}`);
  for (let run = 1; run <= Number(values.runs); run++) {
    await Bun.sleep(1500);
    const before = rssMb();
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMb())), 5);
    const transport = nodemailer.createTransport({ host: "127.0.0.1", port: serve.smtpPort, secure: false, ignoreTLS: true, name: "mail.example.org" });
    const reply = await transport.sendMail({ envelope: { from: "bench@example.org", to: ["sales@company.test"] }, raw }).then(
      (info) => info.response,
      (err: { response?: string }) => String(err.response ?? err),
    );
    transport.close();
    const session = await serve.waitForLog((l) => l.msg === "smtp session" && l.helo === "mail.example.org" && !seen.has(l));
    seen.add(session);
    await Bun.sleep(300);
    clearInterval(sampler);
    const growth = peak - before;
    console.log(`run ${run}: ${reply.slice(0, 30)}; rule ${session.rule}, ${session.auth}; RSS ${before.toFixed(0)} → peak ${peak.toFixed(0)} MB: +${growth.toFixed(0)} MB = ${(growth / mb).toFixed(2)}× the message`);
  }
} finally {
  await serve.stop();
  await dns.close();
  cleanupBinary();
}
