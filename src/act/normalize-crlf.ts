/**
 * Turns every bare CR and every bare LF into CRLF before a message leaves for a relay
 * (SPEC §4, SMTP smuggling): a downstream server that reads `\n.\n` or `\r.\r` as the end
 * of DATA must never see two messages where we accepted one. After this, the only line
 * ending left is CRLF, and dot-stuffing (done by the SMTP client) covers the rest.
 *
 * Trusts nothing about the input. Failure: none; any byte string has a normal form.
 * Cost: line endings are found with native `indexOf`, and the text between them copied in one
 * call each: a few µs for a 4 KB message. Where line endings come closer than DENSE_GAP bytes,
 * a plain byte loop takes over for the next DENSE_WINDOW bytes, so the native calls stay under
 * one per DENSE_GAP bytes whatever the input: a call per line ending made 20 MB of bare newlines
 * (every byte a line ending) take 1.3 s, and every message is normalized before its rules see it
 * (extract.ts). A byte loop everywhere costs twice as much on ordinary text.
 */

const CR = 0x0d;
const LF = 0x0a;
/** Line endings closer than this switch to the byte loop (ordinary text has longer lines). */
const DENSE_GAP = 16;
/** Bytes handled by the byte loop once it has taken over. */
const DENSE_WINDOW = 64 * 1024;

/** Bare occurrences of `byte` (LF not after a CR, CR not before an LF) from `from` to `to`, byte by byte. */
function countBareIn(input: Uint8Array, byte: number, from: number, to: number): number {
  let extra = 0;
  for (let j = from; j < to; j++) {
    if (input[j] !== byte) continue;
    if (byte === LF ? j === 0 || input[j - 1] !== CR : input[j + 1] !== LF) extra++;
  }
  return extra;
}

/** Bare occurrences of `byte` in the whole input (see countBareIn). */
function countBare(input: Uint8Array, byte: number): number {
  let extra = 0;
  let i = 0;
  for (let at = input.indexOf(byte); at !== -1; at = input.indexOf(byte, i)) {
    if (at - i < DENSE_GAP) {
      const end = Math.min(input.length, at + DENSE_WINDOW);
      extra += countBareIn(input, byte, at, end);
      i = end;
    } else {
      if (byte === LF ? at === 0 || input[at - 1] !== CR : input[at + 1] !== LF) extra++;
      i = at + 1;
    }
    if (i >= input.length) break;
  }
  return extra;
}

/** How many bytes the normal form adds: one per bare CR and one per bare LF. */
export function countBareLineEndings(input: Uint8Array): number {
  return countBare(input, LF) + countBare(input, CR);
}

/**
 * Copies input[from, to) into out at o with every line ending written CRLF, byte by byte; a CR
 * at to - 1 takes its LF with it. Returns [next input index, next output index].
 */
function copyDense(input: Uint8Array, from: number, to: number, out: Uint8Array, o: number): [number, number] {
  let j = from;
  for (; j < to; j++) {
    const byte = input[j] as number;
    if (byte !== CR && byte !== LF) {
      out[o++] = byte;
      continue;
    }
    out[o++] = CR;
    out[o++] = LF;
    if (byte === CR && input[j + 1] === LF) j++;
  }
  return [j, o];
}

/** Returns `input` itself when it has no bare CR/LF, else a new array in CRLF-only form. */
export function normalizeLineEndings(input: Uint8Array): Uint8Array {
  const extra = countBareLineEndings(input);
  if (extra === 0) return input;
  const n = input.length;
  const out = new Uint8Array(n + extra);
  let o = 0;
  let copied = 0;
  let cr = input.indexOf(CR);
  let lf = input.indexOf(LF);
  // Walk line ending to line ending, copying the text between them in one native call each.
  while (cr !== -1 || lf !== -1) {
    const at = cr === -1 ? lf : lf === -1 ? cr : Math.min(cr, lf);
    out.set(input.subarray(copied, at), o);
    o += at - copied;
    if (at - copied < DENSE_GAP) {
      [copied, o] = copyDense(input, at, Math.min(n, at + DENSE_WINDOW), out, o);
    } else {
      out[o++] = CR;
      out[o++] = LF;
      copied = input[at] === CR && input[at + 1] === LF ? at + 2 : at + 1;
    }
    if (cr !== -1 && cr < copied) cr = input.indexOf(CR, copied);
    if (lf !== -1 && lf < copied) lf = input.indexOf(LF, copied);
  }
  out.set(input.subarray(copied), o);
  return out;
}
