/**
 * SPF / DKIM / DMARC results for a message, via mailauth, with a hard deadline.
 * Trusts only the envelope the SMTP session saw (never Received: or Authentication-Results
 * headers). ARC and BIMI are not checked (`arc` is a planned field): no DNS is spent on them.
 * DNS goes through the given resolver (or the system's); after `timeoutMs` every result still
 * missing is "temperror" and the resolver refuses further queries, so a slow DNS server cannot
 * hold a session. Never throws.
 */
import { promises as dns } from "node:dns";
import { isIP } from "node:net";
import { Readable } from "node:stream";
import { dkimVerify, spf, type DNSResolver } from "mailauth";
import type { AuthResult, Envelope } from "../types.ts";
import { resolveTxt } from "./dns-txt.ts";
import { dmarcVerdict } from "./dmarc-verdict.ts";

export type { DNSResolver };

export interface AuthenticateOptions {
  /** DNS lookups; defaults to mailauth's (node:dns). Tests pass a fixed table. */
  resolver?: DNSResolver;
  /** Deadline for the three checks together. */
  timeoutMs: number;
  /** This gateway's host name, written into mailauth's comments. */
  mta?: string;
}

export interface AuthResults {
  spf: AuthResult;
  dkim: AuthResult;
  dmarc: AuthResult;
}

export const AUTH_RESULTS: readonly AuthResult[] = ["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"];
const KNOWN_RESULTS: ReadonlySet<string> = new Set(AUTH_RESULTS);

export function isAuthResult(value: string): value is AuthResult {
  return KNOWN_RESULTS.has(value);
}

/** mailauth's status words → the rule vocabulary (SPEC §3). */
function normalize(result: unknown): AuthResult {
  if (typeof result !== "string") return "none";
  if (result === "temperr") return "temperror";
  if (result === "policy") return "fail";
  return KNOWN_RESULTS.has(result) ? (result as AuthResult) : "none";
}

interface StatusHolder {
  status?: { result?: unknown };
}

/** Best DKIM verdict over all signatures: any pass wins, then fail, then the first one's. */
function dkimVerdict(results: readonly StatusHolder[] | undefined): AuthResult {
  const verdicts = (results ?? []).map((row) => normalize(row.status?.result));
  if (verdicts.includes("pass")) return "pass";
  if (verdicts.includes("fail")) return "fail";
  return verdicts[0] ?? "none";
}

function statusOf(value: unknown): AuthResult {
  return value && typeof value === "object" ? normalize((value as StatusHolder).status?.result) : "none";
}

/**
 * The system resolver, in the shape mailauth calls (node:dns `resolve`). TXT goes through
 * dns-txt.ts: Bun's node:dns splits a record of several strings into several records.
 */
const systemResolver: DNSResolver = (domain, rrtype) =>
  rrtype === "TXT" ? resolveTxt(domain) : dns.resolve(domain, rrtype) as Promise<string[][] | string[]>;

/**
 * Messages bigger than this go to the DKIM verifier in slices of this size, with a turn of the
 * event loop between two. Why: mailauth feeds a Buffer in 64 KB writes, but its verifier drains
 * each one in the same microtask chain, so the whole body was canonicalized and hashed as ONE
 * task: a 24.5 MB message held every other session for 180 ms (measured with a 1 ms interval
 * timer; other replies were late by 244–560 ms in serve). Sliced: ~2–3 ms at most, same total.
 */
export const DKIM_SLICE_BYTES = 256 * 1024;

async function* slices(bytes: Buffer): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += DKIM_SLICE_BYTES) {
    yield bytes.subarray(at, at + DKIM_SLICE_BYTES);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** What dkimVerify reads: the bytes as they are, or for a big message a stream of slices. */
function dkimInput(raw: Uint8Array): Buffer | Readable {
  const bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  return bytes.length > DKIM_SLICE_BYTES ? Readable.from(slices(bytes), { objectMode: false }) : bytes;
}

class DeadlineError extends Error {
  readonly code = "ETIMEOUT";
}

/** The HELO identity as mailauth's own authenticate() passes it: the client address when none, an address literal bracketed. */
function heloIdentity(envelope: Envelope): string {
  const helo = envelope.helo || envelope.clientIp;
  return isIP(helo) ? `[${helo}]` : helo;
}

/**
 * Runs mailauth's checks: DKIM and SPF side by side (neither waits for the other's DNS), then
 * DMARC from both. When the deadline passes first, the results found by then stand and only
 * the missing ones are "temperror": a DKIM key whose DNS server is down must not turn a
 * finished SPF pass into temperror.
 */
export async function authenticate(raw: Uint8Array, envelope: Envelope, options: AuthenticateOptions): Promise<AuthResults> {
  let expired = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      expired = true;
      resolve();
    }, options.timeoutMs);
  });
  const baseResolver = options.resolver ?? systemResolver;
  const resolver: DNSResolver = async (domain, rrtype) => {
    if (expired) throw new DeadlineError(`DNS deadline passed before ${rrtype} ${domain}`);
    return baseResolver(domain, rrtype);
  };
  const found: Partial<AuthResults> = {};
  // mailauth ≥ 5 itself answers temperror when an include:/redirect= target's DNS fails (RFC 7208
  // §5.2, §6.1); mailauth 4 needed a wrapped resolver here (test: "an include: or redirect= ...").
  const spfRun = spf({ ip: envelope.clientIp, helo: heloIdentity(envelope), sender: envelope.mailFrom, mta: options.mta ?? "mailgw", resolver })
    .then((result) => {
      found.spf = statusOf(result);
      return result;
    });
  const dkimRun = dkimVerify(dkimInput(raw), { resolver, sender: envelope.mailFrom })
    .then((result) => {
      found.dkim = dkimVerdict(result.results);
      return result;
    });
  const run = (async () => {
    const [spfResult, dkimResult] = await Promise.all([spfRun, dkimRun]);
    const signatures = (dkimResult.results ?? []).map((r) => ({
      result: normalize(r.status?.result), id: r.id, signingDomain: r.signingDomain, underSized: r.status?.underSized,
    }));
    found.dmarc = await dmarcVerdict(dkimResult.headerFrom ?? [], { spf: { result: statusOf(spfResult), domain: spfResult.domain }, signatures, resolver });
  })().catch(() => {
    // A check that threw (mailauth catches DNS errors itself) leaves its result, and DMARC's, to temperror.
  });
  try {
    await Promise.race([run, deadline]);
  } finally {
    clearTimeout(timer);
  }
  return { spf: found.spf ?? "temperror", dkim: found.dkim ?? "temperror", dmarc: found.dmarc ?? "temperror" };
}
