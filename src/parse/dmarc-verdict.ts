/**
 * The `dmarc` field's value: mailauth's DMARC check (RFC 9989: policy and organizational domain
 * by DNS Tree Walk, adkim=s / aspf=s as the same domain) run for each author domain of the
 * message, where a verdict of mailauth or of this gateway was not the RFC's, the RFC's:
 * - Several From addresses, or several From fields, with different domains: every domain is
 *   checked and the worst verdict stands (RFC 7489 §6.6.1). mailauth answers nothing for such a
 *   message, which read as "none", as if no domain had a policy: adding one address of their own
 *   (or a second From field on top of a signed message) let a spoofer past "dmarc equals fail".
 * - A fail that stands only because an identifier which could have aligned was not checkable
 *   for now is "temperror" (§6.6.2), but only such an identifier. Any temperror of SPF or of any
 *   signature used to count: a spoofer's MAIL FROM domain or a signature of their own domain
 *   whose DNS answers SERVFAIL (theirs to break) turned every spoof's fail into temperror, and
 *   so past a rule "dmarc equals fail → reject".
 * Trusts only what mailauth verified; the DNS goes through the caller's resolver (its deadline).
 */
import { dmarc, type DNSResolver } from "mailauth";
import { getDomain } from "tldts";
import type { AuthResult } from "../types.ts";

/** A DKIM signature's outcome, as mailauth's dkimVerify lists it (its result already in rule words). */
export interface SignatureOutcome {
  result: AuthResult;
  id?: string;
  signingDomain?: string;
  /** Body bytes after the signature's l= (mailauth sorts those signatures last). */
  underSized?: number;
}

export interface SpfOutcome {
  result: AuthResult;
  /** The domain SPF checked: the MAIL FROM domain, or the HELO name for the null sender. */
  domain?: string;
}

/**
 * Author domains checked per message at most: each costs a few DNS lookups. A From naming more
 * domains than this is not one DMARC can vouch for (RFC 7489 §6.6.1 lets a receiver reject a
 * multi-valued From outright): its verdict is "fail".
 */
export const MAX_AUTHOR_DOMAINS = 8;

/** Worst first: the verdict of a message with several author domains is the first one found here. */
const SEVERITY: readonly AuthResult[] = ["fail", "temperror", "permerror", "softfail", "neutral", "none", "pass"];

function bareDomain(domain: string): string {
  return domain.trim().toLowerCase().replace(/\.$/, "");
}

/**
 * Options as mailauth passes them to tldts. The public suffix list only decides whether an
 * identifier that could not be checked might have aligned (below); mailauth's own alignment
 * walks the DNS tree.
 */
const TLDTS_OPTIONS = { allowIcannDomains: true, allowPrivateDomains: true };

function organizational(domain: string): string {
  const bare = bareDomain(domain);
  return getDomain(bare, TLDTS_OPTIONS) ?? bare;
}

/** Relaxed alignment (RFC 7489 §3.1): the same organizational domain. */
export function relaxedAligned(a: string, b: string): boolean {
  return organizational(a) === organizational(b);
}

/** The distinct domains of the From addresses (every From field), in order. */
export function authorDomains(addresses: readonly string[]): string[] {
  const domains = addresses.filter((a) => a.includes("@")).map((a) => bareDomain(a.slice(a.lastIndexOf("@") + 1)));
  return [...new Set(domains.filter((d) => d.length > 0))];
}

function normalizeDmarc(result: unknown): AuthResult {
  if (result === "pass" || result === "fail" || result === "none" || result === "temperror") return result;
  return result === "temperr" ? "temperror" : "none";
}

interface DomainCheck {
  spf: SpfOutcome;
  signatures: readonly SignatureOutcome[];
  resolver: DNSResolver;
}

/** One author domain's verdict. */
async function domainVerdict(domain: string, check: DomainCheck): Promise<AuthResult> {
  const spfDomains = check.spf.result === "pass" && check.spf.domain ? [check.spf.domain] : [];
  const passing = check.signatures.filter((s) => s.result === "pass" && s.signingDomain);
  const result = await dmarc({
    headerFrom: `postmaster@${domain}`,
    spfDomains,
    dkimDomains: passing.map((s) => ({ id: s.id, domain: s.signingDomain as string, underSized: s.underSized })),
    resolver: check.resolver,
  });
  if (!result) return "none";
  const verdict = normalizeDmarc(result.status?.result);
  if (verdict !== "fail") return verdict;
  const couldAlign = (checked: string | undefined) => checked !== undefined && relaxedAligned(checked, domain);
  const unchecked = (check.spf.result === "temperror" && couldAlign(check.spf.domain))
    || check.signatures.some((s) => s.result === "temperror" && couldAlign(s.signingDomain));
  return unchecked ? "temperror" : "fail";
}

/** The message's DMARC verdict over all its author domains; "none" when the From has no domain. */
export async function dmarcVerdict(fromAddresses: readonly string[], check: DomainCheck): Promise<AuthResult> {
  const domains = authorDomains(fromAddresses);
  if (domains.length === 0) return "none";
  if (domains.length > MAX_AUTHOR_DOMAINS) return "fail";
  const verdicts = await Promise.all(domains.map((d) => domainVerdict(d, check)));
  return SEVERITY.find((s) => verdicts.includes(s)) ?? "none";
}
