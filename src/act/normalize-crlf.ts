/**
 * Turns every bare CR and every bare LF into CRLF before a message leaves for a relay
 * (SPEC §4, SMTP smuggling): a downstream server that reads `\n.\n` or `\r.\r` as the end
 * of DATA must never see two messages where we accepted one. After this, the only line
 * ending left is CRLF, and dot-stuffing (done by the SMTP client) covers the rest.
 *
 * Trusts nothing about the input. Failure: none; any byte string has a normal form.
 * Cost: one loop over the bytes to count, and for a message that is not canonical one more to
 * copy into one allocation of the exact output size (a canonical one is returned as it is).
 * Not a native `indexOf` per line ending: its call cost made 20 MB of bare newlines (every byte
 * a line ending) take 1.3 s, and every message is normalized before its rules see it (extract.ts).
 */

const CR = 0x0d;
const LF = 0x0a;

/** How many bytes the normal form adds: one per bare CR and one per bare LF. */
export function countBareLineEndings(input: Uint8Array): number {
  let extra = 0;
  const n = input.length;
  for (let i = 0; i < n; i++) {
    const byte = input[i];
    if (byte === LF) {
      if (i === 0 || input[i - 1] !== CR) extra++;
    } else if (byte === CR && input[i + 1] !== LF) extra++;
  }
  return extra;
}

/** Returns `input` itself when it has no bare CR/LF, else a new array in CRLF-only form. */
export function normalizeLineEndings(input: Uint8Array): Uint8Array {
  const extra = countBareLineEndings(input);
  if (extra === 0) return input;
  const out = new Uint8Array(input.length + extra);
  let o = 0;
  const n = input.length;
  for (let i = 0; i < n; i++) {
    const byte = input[i] as number;
    if (byte !== CR && byte !== LF) {
      out[o++] = byte;
      continue;
    }
    out[o++] = CR;
    out[o++] = LF;
    if (byte === CR && input[i + 1] === LF) i++;
  }
  return out;
}
