/**
 * SPF / DKIM / DMARC results for a message, via mailauth, with a hard deadline.
 * Trusts only the envelope the SMTP session saw (never Received: or Authentication-Results
 * headers: trustReceived stays off). DNS goes through the given resolver (or the system's);
 * after `timeoutMs` every result still missing is "temperror" and the resolver refuses
 * further queries, so a slow DNS server cannot hold a session. Never throws.
 */
import { promises as dns } from "node:dns";
import { authenticate as mailauthAuthenticate, type DNSResolver } from "mailauth";
import type { AuthResult, Envelope } from "../types.ts";
import { resolveTxt } from "./dns-txt.ts";

export type { DNSResolver };

export interface AuthenticateOptions {
  /** DNS lookups; defaults to mailauth's (node:dns). Tests pass a fixed table. */
  resolver?: DNSResolver;
  /** Deadline for all four checks together. */
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

const ALL_TEMPERROR: AuthResults = { spf: "temperror", dkim: "temperror", dmarc: "temperror" };

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

class DeadlineError extends Error {
  readonly code = "ETIMEOUT";
}

/** Runs mailauth; resolves to temperror for everything when the deadline passes first. */
export async function authenticate(raw: Uint8Array, envelope: Envelope, options: AuthenticateOptions): Promise<AuthResults> {
  let expired = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<AuthResults>((resolve) => {
    timer = setTimeout(() => {
      expired = true;
      resolve(ALL_TEMPERROR);
    }, options.timeoutMs);
  });
  const baseResolver = options.resolver ?? systemResolver;
  const resolver: DNSResolver = async (domain, rrtype) => {
    if (expired) throw new DeadlineError(`DNS deadline passed before ${rrtype} ${domain}`);
    return baseResolver(domain, rrtype);
  };
  const run = (async (): Promise<AuthResults> => {
    try {
      const result = await mailauthAuthenticate(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength), {
        ip: envelope.clientIp,
        helo: envelope.helo,
        sender: envelope.mailFrom,
        mta: options.mta ?? "mailgw",
        trustReceived: false,
        disableBimi: true,
        resolver,
      });
      return {
        spf: statusOf(result.spf),
        dkim: dkimVerdict(result.dkim?.results),
        dmarc: statusOf(result.dmarc),
      };
    } catch {
      return ALL_TEMPERROR;
    }
  })();
  try {
    return await Promise.race([run, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
