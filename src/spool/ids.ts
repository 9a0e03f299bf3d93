/**
 * Message ids: generated here, never taken from the message, so an id is always safe as a
 * file name (no path injection) and in an SMTP reply.
 *
 * Format: 26 characters of lower-case Crockford base32 (ULID layout): 48 bits of
 * milliseconds since the epoch (10 chars, so ids sort by time as strings) followed by 80
 * random bits (16 chars) from the CSPRNG. Trusts nothing; `isMessageId` is the check every
 * path builder runs before touching the file system.
 */
import { randomBytes } from "node:crypto";

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
const TIME_CHARS = 10;
const RANDOM_CHARS = 16;
export const MESSAGE_ID_LENGTH = TIME_CHARS + RANDOM_CHARS;
const ID_PATTERN = new RegExp(`^[${ALPHABET}]{${MESSAGE_ID_LENGTH}}$`);

export function newMessageId(nowMs: number = Date.now()): string {
  let time = "";
  let t = Math.max(0, Math.floor(nowMs));
  for (let i = 0; i < TIME_CHARS; i++) {
    time = ALPHABET.charAt(t % 32) + time;
    t = Math.floor(t / 32);
  }
  // 10 random bytes = 80 bits = 16 base32 characters of 5 bits each.
  const bytes = randomBytes(10);
  let bits = 0;
  let value = 0;
  let rand = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      rand += ALPHABET.charAt((value >> bits) & 31);
    }
    value &= (1 << bits) - 1;
  }
  return time + rand;
}

/** True for strings `newMessageId` could have produced (and nothing else). */
export function isMessageId(s: string): boolean {
  return ID_PATTERN.test(s);
}

/** Milliseconds encoded in an id (for diagnostics and tests). */
export function messageIdTime(id: string): number {
  let t = 0;
  for (const ch of id.slice(0, TIME_CHARS)) t = t * 32 + ALPHABET.indexOf(ch);
  return t;
}
