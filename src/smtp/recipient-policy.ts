/**
 * RCPT TO policy: this gateway accepts mail only for the domains in rules.yaml and is never
 * an open relay (SPEC §4). Besides the plain domain check, the routing syntaxes that older
 * MTAs honoured — and that turn a "local" address into a relay request — are refused:
 *   `%` hack        v%other.example@company.com           → 550 5.7.1
 *   bang path       other.example!v@company.com           → 550 5.7.1
 *   source route    <@company.com:v@other.example>        → 550 5.7.1
 *   quoted `@`      <"v@other.example"@company.com>       → 501 (smtp-server refuses the syntax)
 *   double `@`      <v@other.example@company.com>         → 501 (idem)
 *   IP literal      v@[192.0.2.1]                         → 550 5.7.1
 * Input: the raw RCPT argument (smtp-server strips source routes silently, so they are only
 * visible there) and the address smtp-server parsed. Trusts nothing in either.
 * Pure: no I/O; the domain list is passed in.
 */
import { domainToASCII } from "node:url";
import { unquoteLocalPart } from "../parse/local-part.ts";

export { unquoteLocalPart };

export type RecipientVerdict =
  | { ok: true; address: string }
  | { ok: false; code: 550 | 501; enhanced: string; text: string };

const RELAY_DENIED = { ok: false, code: 550, enhanced: "5.7.1", text: "Relaying denied" } as const;
const ROUTING_REFUSED = { ok: false, code: 550, enhanced: "5.7.1", text: "Relaying denied: address routing syntax not accepted" } as const;
const BAD_SYNTAX = { ok: false, code: 501, enhanced: "5.1.3", text: "Bad recipient address syntax" } as const;

/** `<@a,@b:user@c>` — a source route right after the opening bracket of the path. */
const SOURCE_ROUTE = /^\s*TO\s*:\s*<\s*@/i;

const normalizedDomains = new WeakMap<readonly string[], ReadonlySet<string>>();

function domainSet(domains: readonly string[]): ReadonlySet<string> {
  let set = normalizedDomains.get(domains);
  if (!set) {
    set = new Set(domains.map(normalizeDomain).filter((d) => d !== ""));
    normalizedDomains.set(domains, set);
  }
  return set;
}

/**
 * Characters WHATWG host parsing (domainToASCII) reads as the end of a host or as an escape:
 * `company.com/evil.example` and `company%2ecom` came back as company.com. The SMTP parser
 * refuses them (lenient-syntax.ts); refused here too, whoever calls.
 */
const URL_HOST_DELIMITERS = /[/?#\\%@:\s]/;

/**
 * The domain without the one dot a fully qualified name may end with (`company.com.`, the DNS
 * root): Postfix and Sendmail take `b@company.com.` as b@company.com (Postfix's trivial-rewrite
 * strips the dot, checks relay_domains on the rest and relays the address without it), and the
 * recipient policy, the stored sender and the parser (lenient-syntax.ts) do the same. Refused
 * with 501, a sender that wrote the dot had its mail bounce at this MX alone. Two dots (`company.com..`)
 * or a dot alone stay refused, as Postfix refuses them.
 */
export function withoutRootDot(domain: string): string {
  return domain.length > 1 && domain.endsWith(".") && !domain.endsWith("..") ? domain.slice(0, -1) : domain;
}

/** Lower-case ASCII (punycode) form; "" when the domain is not a valid IDN. */
export function normalizeDomain(domain: string): string {
  const trimmed = domain.trim();
  if (URL_HOST_DELIMITERS.test(trimmed)) return "";
  return domainToASCII(trimmed.replace(/\.$/, "").toLowerCase());
}

/**
 * @param rawArgument the RCPT command after the verb, e.g. `TO:<a@b> NOTIFY=NEVER`
 * @param address the address smtp-server parsed from it
 */
export function checkRecipient(rawArgument: string, address: string, domains: readonly string[]): RecipientVerdict {
  if (SOURCE_ROUTE.test(rawArgument)) return ROUTING_REFUSED;
  const allowed = domainSet(domains);
  if (address.toLowerCase() === "postmaster") {
    // RFC 5321 §4.1.1.3: the domain-less postmaster must be accepted; it means ours.
    const first = [...allowed][0];
    return first ? { ok: true, address: `postmaster@${first}` } : RELAY_DENIED;
  }
  const at = address.lastIndexOf("@");
  if (at <= 0 || at === address.length - 1) return BAD_SYNTAX;
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (local.includes("@")) return BAD_SYNTAX;
  if (local.includes("%") || local.includes("!")) return ROUTING_REFUSED;
  if (domain.startsWith("[")) return ROUTING_REFUSED;
  // `v@company.com.` is v@company.com (withoutRootDot), checked and stored without the dot;
  // `v@company.com..` is refused by the parser with 501 before this runs, and the dry run
  // (mailgw test --to), with no parser in front, must say the same.
  const bare = withoutRootDot(domain);
  if (bare.endsWith(".")) return BAD_SYNTAX;
  const ascii = normalizeDomain(bare);
  if (!ascii || !allowed.has(ascii)) return RELAY_DENIED;
  if (!writtenAsDecoded(rawArgument, ascii)) return RELAY_DENIED;
  return { ok: true, address: `${unquoteLocalPart(local)}@${ascii}` };
}

/**
 * smtp-server decodes every `xn--` label of an address with punycode, IDNA-invalid ones too:
 * `v@xn--company-.com` and `v@company.xn--com-` reached us as v@company.com and got 250, for
 * domains nobody has (an A-label must round-trip, RFC 5890). So the domain as the client wrote
 * it must name the same domain as what we were handed; a command we cannot read it from is
 * left to the checks above.
 */
/** A domain with an IDNA A-label, the labels smtp-server punycode-decodes. */
const A_LABEL = /(^|\.)xn--/i;

function writtenAsDecoded(command: string, ascii: string): boolean {
  const written = writtenDomain(command);
  return written === null || !A_LABEL.test(written) || normalizeDomain(written) === ascii;
}

/**
 * The domain of the path in a MAIL or RCPT argument as the client wrote it (`TO:<v@d> …` → d,
 * `FROM:v@d` → d; without `<…>`, quotes in the local part skipped); null when there is none.
 */
export function writtenDomain(command: string): string | null {
  const colon = command.indexOf(":");
  if (colon < 0) return null;
  const rest = command.slice(colon + 1).trimStart();
  // smtp-server's path is `<` to the first `>` (it refuses any other `<` or `>` in it, quoted or
  // not), so the domain as written is read there. Read with quotes, a lone `"` in the local part
  // (`<o"b@xn--mnchen-3ya.de> SIZE=10`, which lenient parsing takes) ran the domain on to the end
  // of the command: the sender was recorded as `o"b@xn--mnchen-3ya.de> size=10` and such a
  // recipient of ours got 550.
  if (rest.startsWith("<")) {
    const path = rest.slice(1, rest.includes(">") ? rest.indexOf(">") : rest.length);
    const at = path.lastIndexOf("@");
    return at < 0 ? null : path.slice(at + 1);
  }
  let end = rest.length;
  let quoted = false;
  for (let i = 0; i < rest.length; i++) {
    const c = rest[i];
    if (quoted && c === "\\") i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && (c === ">" || c === " " || c === "\t" || c === "\r" || c === "\n")) {
      end = i;
      break;
    }
  }
  const path = rest.slice(0, end);
  const at = path.lastIndexOf("@");
  return at < 0 ? null : path.slice(at + 1);
}

/**
 * The envelope sender in the recipients' canonical form: needless quotes dropped, the domain
 * lower-cased in its ASCII form (an IDN as its A-label, which is also how it can go to any
 * relay). smtp-server hands `a@xn--mnchen-3ya.de` over as `a@münchen.de`; without this, rules
 * and the database would see the Unicode form of what the client sent in ASCII. The null
 * sender, domain-less addresses, IP literals, two trailing dots and domains IDNA refuses are
 * kept as they are; one trailing dot (the DNS root's) is dropped.
 */
export function canonicalSender(address: string, command?: string): string {
  const at = address.lastIndexOf("@");
  if (at <= 0) return address;
  // An A-label IDNA refuses (`ceo@xn--company-.com`) is kept as written, not as the domain
  // smtp-server's punycode decoding made of it (`company.com`): see writtenAsDecoded.
  const written = command === undefined ? null : writtenDomain(command);
  const domain = written !== null && A_LABEL.test(written) && normalizeDomain(written) === "" ? written.toLowerCase() : address.slice(at + 1);
  // The root's dot (`sender.example.`) dropped, as for a recipient; two dots never get past the
  // parser (501) and are kept, so the dry run can say so.
  const bare = withoutRootDot(domain);
  const ascii = bare.startsWith("[") || bare.endsWith(".") ? bare : normalizeDomain(bare);
  return `${unquoteLocalPart(address.slice(0, at))}@${ascii === "" ? bare : ascii}`;
}

/**
 * One entry per accepted address, compared case-insensitively, a repeat's spelling in the earlier
 * entry's place (smtp-server's rule for a repeated RCPT). smtp-server applies it to the address
 * as the client wrote it, before the RCPT handler rewrites it (`postmaster` → with our domain,
 * needless quotes dropped, an IDN as its A-label), so `<postmaster>` twice stayed two entries:
 * this applies it again to the addresses serve keeps.
 */
export function oneEntryPerAddress(addresses: readonly string[]): string[] {
  // Per message in serve: most have one recipient, which needs no index.
  if (addresses.length < 2) return [...addresses];
  const index = new Map<string, number>();
  const kept: string[] = [];
  for (const address of addresses) {
    const key = address.toLowerCase();
    const at = index.get(key);
    if (at === undefined) {
      index.set(key, kept.length);
      kept.push(address);
    } else {
      kept[at] = address;
    }
  }
  return kept;
}
