/**
 * Turns every bare CR and every bare LF into CRLF before a message leaves for a relay
 * (SPEC §4, SMTP smuggling): a downstream server that reads `\n.\n` or `\r.\r` as the end
 * of DATA must never see two messages where we accepted one. After this, the only line
 * ending left is CRLF, and dot-stuffing (done by the SMTP client) covers the rest.
 *
 * Trusts nothing about the input. Failure: none; any byte string has a normal form.
 * Cost: a message that is already canonical is scanned with native `indexOf` and returned
 * without a copy; otherwise one allocation of the exact output size.
 */

const CR = 0x0d;
const LF = 0x0a;

/** How many bytes the normal form adds: one per bare CR and one per bare LF. */
export function countBareLineEndings(input: Uint8Array): number {
  let extra = 0;
  for (let i = input.indexOf(LF); i !== -1; i = input.indexOf(LF, i + 1)) {
    if (i === 0 || input[i - 1] !== CR) extra++;
  }
  for (let i = input.indexOf(CR); i !== -1; i = input.indexOf(CR, i + 1)) {
    if (input[i + 1] !== LF) extra++;
  }
  return extra;
}

/** Returns `input` itself when it has no bare CR/LF, else a new array in CRLF-only form. */
export function normalizeLineEndings(input: Uint8Array): Uint8Array {
  const extra = countBareLineEndings(input);
  if (extra === 0) return input;
  const out = new Uint8Array(input.length + extra);
  let o = 0;
  let copied = 0;
  let cr = input.indexOf(CR);
  let lf = input.indexOf(LF);
  // Walk line ending to line ending, copying the text between them in one native call each.
  while (cr !== -1 || lf !== -1) {
    const at = cr === -1 ? lf : lf === -1 ? cr : Math.min(cr, lf);
    out.set(input.subarray(copied, at), o);
    o += at - copied;
    out[o++] = CR;
    out[o++] = LF;
    copied = input[at] === CR && input[at + 1] === LF ? at + 2 : at + 1;
    if (cr !== -1 && cr < copied) cr = input.indexOf(CR, copied);
    if (lf !== -1 && lf < copied) lf = input.indexOf(LF, copied);
  }
  out.set(input.subarray(copied), o);
  return out;
}
