/**
 * EUC-CN (GB2312) and EUC-KR proper (KS X 1001), as Python's codecs and the standards read them,
 * for the labels that name them and no superset (EUC-CN, GB2312-80, KSX1001: charset.ts).
 * TextDecoder has only the supersets GBK and UHC, whose trail bytes include ASCII letters: after
 * a stray lead byte they take the next letter into a CJK character, so `\xB0wire transfer` in a
 * part so labelled read `皐ire transfer` and slipped past a `body` rule for "wire transfer",
 * which Python (U+FFFD, then the letters), postal-mime and Thunderbird (unknown label:
 * windows-1252) all show. Linear; never throws.
 */
import type { BytesDecoder } from "./charset.ts";

/**
 * A decoder of `superset` that keeps only the byte pairs of an EUC charset (lead `firstLead`-
 * `lastLead`, trail A1-FE: the superset decodes them to the same characters) and reads every
 * other byte above 7F as U+FFFD on its own: such a byte becomes 0xFF, which neither GBK nor UHC
 * takes as a lead (one U+FFFD, and the byte after it is read afresh).
 */
function strictEuc(encoding: string, superset: string, firstLead: number, lastLead: number): BytesDecoder & { encoding: string } {
  const decoder = new TextDecoder(superset as ConstructorParameters<typeof TextDecoder>[0]);
  const decode = (bytes: Uint8Array): string => {
    let clean: Uint8Array | null = null;
    for (let i = 0; i < bytes.length; i++) {
      const byte = bytes[i] as number;
      if (byte < 0x80) continue;
      const trail = i + 1 < bytes.length ? (bytes[i + 1] as number) : 0;
      if (byte >= firstLead && byte <= lastLead && trail >= 0xa1 && trail <= 0xfe) {
        i++;
        continue;
      }
      clean ??= Uint8Array.from(bytes);
      clean[i] = 0xff;
    }
    return decoder.decode(clean ?? bytes);
  };
  return { encoding, decode: (bytes?: Uint8Array) => (bytes ? decode(bytes) : "") };
}

/** EUC-CN: GB2312's rows, lead A1-F7. */
export const eucCnDecoder = strictEuc("euc-cn", "gbk", 0xa1, 0xf7);

/** KS X 1001 in EUC-KR: lead A1-FE. */
export const ksx1001Decoder = strictEuc("ksx1001", "euc-kr", 0xa1, 0xfe);
