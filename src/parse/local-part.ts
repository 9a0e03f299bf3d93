/**
 * One form for a mailbox whatever quoting the sender chose: `"ceo"@company.com` names the same
 * mailbox as `ceo@company.com` (RFC 5321 §4.1.2, RFC 5322 §3.4.1), and mail clients show both
 * as the latter. The envelope (smtp/recipient-policy.ts) and the header addresses the rules
 * see (address-list.ts) both use it, so a rule for ceo@company.com cannot be bypassed by
 * quoting. A local part that does need its quotes (spaces, specials) is kept quoted. Pure.
 */

/** RFC 5322 atext (plus UTF-8, RFC 6531), in dot-atom form: a local part that needs no quotes. */
const DOT_ATOM = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+)*$/;

/** Whether `text` is a local part that needs no quotes (RFC 5322 dot-atom, UTF-8 allowed). */
export function isDotAtom(text: string): boolean {
  return DOT_ATOM.test(text);
}

/** A quoted-pair: the backslash and the character it stands for. */
const QUOTED_PAIR = /\\([\s\S])/g;

/** `"v"` and `"\v"` → `v`; anything that needs its quotes is kept as sent. */
export function unquoteLocalPart(local: string): string {
  if (local.length < 3 || !local.startsWith('"') || !local.endsWith('"')) return local;
  // A quoted-pair is its character (RFC 5321 §4.1.2, RFC 5322 §3.2.4), as Postfix reads it:
  // kept as sent, `"c\eo"@company.com` slipped past a rule for ceo@company.com.
  const inner = local.slice(1, -1).replace(QUOTED_PAIR, "$1");
  return DOT_ATOM.test(inner) ? inner : local;
}

/** `"v"@x` → `v@x`; an address without a local part is returned as it is. */
export function unquoteAddress(address: string): string {
  const at = address.lastIndexOf("@");
  return at <= 0 ? address : `${unquoteLocalPart(address.slice(0, at))}${address.slice(at)}`;
}

/** The quoted-string form of an unescaped local part (`john "j" doe` → `"john \"j\" doe"`). */
export function quoteLocalPart(text: string): string {
  return `"${text.replace(/["\\]/g, "\\$&")}"`;
}
