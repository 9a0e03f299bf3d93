/**
 * Mutation fuzzing of the real-world corpus (/work/shared/corpus), bounded and replayable (fixed
 * seed): each mutated message (test/helpers/mutate.ts) is classified as serve classifies it —
 * from its bytes and from its spool file, which must give the same rule fields — within a second
 * of CPU, and its webhook payload is JSON whose `raw` is the stored bytes and whose subject and
 * attachments are the ones the rules saw. Found with it: the payload read bare CRs as the rules
 * did not (webhook-line-endings.test.ts). A failure names the corpus file, the mutations and the
 * index: rerun with FUZZ_ONLY=<index> to replay one. Skips when the corpus is not on this machine.
 */
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildWebhookPayload } from "../../src/act/webhook-payload.ts";
import { webhookBody } from "../../src/act/webhook-body.ts";
import { extractFacts, extractFactsFromFile } from "../../src/parse/extract.ts";
import type { Envelope, MessageFacts } from "../../src/types.ts";
import { cpuMsSince } from "../helpers/cpu-time.ts";
import { mutate } from "../helpers/mutate.ts";
import { seeded } from "../helpers/seeded.ts";

const CORPUS = "/work/shared/corpus";
const SEED = 20261125;
const MUTANTS = 300;
/** The goal: any message within the size limit is classified in under 1 s. */
const MAX_CLASSIFY_CPU_MS = 1000;
const ENVELOPE: Envelope = { mailFrom: "a@sender.example", rcptTo: ["b@company.com"], clientIp: "192.0.2.1", helo: "mx.example.org", tls: false };

function emlFiles(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return emlFiles(path);
    return name.endsWith(".eml") && statSync(path).size > 0 ? [path] : [];
  });
}

/** What a rule can read of the message (the envelope and size aside). */
function ruleFields(f: MessageFacts) {
  return { subject: f.subject, from: f.fromAll, fromNames: f.fromNames, to: f.to, cc: f.cc, body: f.body, attachments: f.attachments, types: f.attachmentTypes, headers: [...f.headers] };
}

test("mutated corpus messages: serve's two parse paths agree, classify in time, and post a faithful webhook payload", async () => {
  if (!existsSync(CORPUS)) {
    console.log(`skipped: no corpus at ${CORPUS}`);
    return;
  }
  const files = emlFiles(CORPUS);
  const dir = mkdtempSync(join(tmpdir(), "mailgw-fuzz-"));
  const spool = join(dir, "m.eml");
  const only = process.env.FUZZ_ONLY === undefined ? null : Number(process.env.FUZZ_ONLY);
  const random = seeded(SEED);
  const failures: string[] = [];
  for (let i = 0; i < MUTANTS; i++) {
    const source = files[Math.floor(random() * files.length)]!;
    const { bytes, applied } = mutate(random, readFileSync(source));
    if ((only !== null && i !== only) || bytes.byteLength === 0) continue;
    const what = `#${i} ${source.slice(CORPUS.length + 1)} <- ${applied.join("+")}`;
    const started = process.cpuUsage();
    const facts = await extractFacts(bytes, ENVELOPE);
    const ms = cpuMsSince(started);
    if (ms > MAX_CLASSIFY_CPU_MS) failures.push(`${what}: ${Math.round(ms)} ms of CPU to classify`);
    writeFileSync(spool, bytes);
    const fromFile = await extractFactsFromFile(spool, ENVELOPE);
    if (JSON.stringify(ruleFields(fromFile)) !== JSON.stringify(ruleFields(facts))) failures.push(`${what}: facts from the spool file differ from the bytes'`);
    const fields = await buildWebhookPayload({ id: "01m4z7fjx44hhabeprt5ekyv55", receivedAt: 0, rule: null, category: "default", envelope: ENVELOPE, raw: bytes }, 0);
    const payload = JSON.parse(webhookBody(fields, bytes).toString("utf8"));
    if (!Buffer.from(payload.raw, "base64").equals(bytes)) failures.push(`${what}: the payload's raw is not the stored bytes`);
    if (payload.subject !== null && payload.subject !== facts.subject) failures.push(`${what}: payload subject ${JSON.stringify(payload.subject).slice(0, 80)} vs rules' ${JSON.stringify(facts.subject).slice(0, 80)}`);
  }
  expect(failures).toEqual([]);
}, 60_000);
