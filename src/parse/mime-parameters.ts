/**
 * RFC 2045 parameters of a structured MIME field (`type/subtype; key=value; key="quoted"`) and
 * their RFC 2231 forms: extended values (`key*=charset'lang'%XX…`) and sections (`key*0=`,
 * `key*1*=`…). Shared by the attachment names the rules see (part-names.ts) and the boundary
 * the 7-bit conversion walks (act/mime-downgrade.ts), so both read a part as postal-mime and
 * mail clients do. Trusts nothing in the value; linear in its length; never throws.
 */
import { decoderFor } from "./charset.ts";
import { hexEscapedBytes } from "./encoded-words.ts";

export interface Parameter {
  key: string;
  value: string;
}

/** Index of the first `;` at or after `from` outside a quoted string, or the length. */
function nextSemicolon(value: string, from: number): number {
  let quoted = false;
  for (let i = from; i < value.length; i++) {
    const c = value[i];
    if (quoted && c === "\\") i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && c === ";") return i;
  }
  return value.length;
}

/** An unquoted value without its comments (`x.exe (comment)`), as postal-mime drops them; `a(1).exe` keeps its parentheses. */
function tokenValue(text: string): string {
  let out = "";
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "(" && (depth > 0 || i === 0 || text[i - 1] === " " || text[i - 1] === "\t")) depth++;
    else if (c === ")" && depth > 0) depth--;
    else if (depth === 0) out += c;
  }
  return out.trim();
}

/** The parameters of a structured field value (`type; key=value; key="quoted"`), in order, duplicates kept. */
export function parameters(value: string): Parameter[] {
  const params: Parameter[] = [];
  for (let at = nextSemicolon(value, 0); at < value.length; ) {
    let i = at + 1;
    while (i < value.length && value[i] !== "=" && value[i] !== ";") i++;
    const key = value.slice(at + 1, i).trim().toLowerCase();
    if (i >= value.length || value[i] === ";") {
      at = i;
      continue;
    }
    i++;
    while (value[i] === " " || value[i] === "\t") i++;
    if (value[i] === '"') {
      // Backslash escapes only inside the quotes: unquoted `C:\temp\x.exe` keeps its backslashes.
      const chars: string[] = [];
      for (i++; i < value.length && value[i] !== '"'; i++) {
        if (value[i] === "\\" && i + 1 < value.length) i++;
        chars.push(value[i] ?? "");
      }
      params.push({ key, value: chars.join("") });
      at = nextSemicolon(value, i + 1);
    } else {
      const end = value.indexOf(";", i);
      at = end < 0 ? value.length : end;
      params.push({ key, value: tokenValue(value.slice(i, at)) });
    }
  }
  return params;
}

interface Section {
  nr: number;
  value: string;
  encoded: boolean;
}

/** RFC 2231 sections joined: adjacent encoded ones decoded together (a character may span two). */
function joinSections(sections: Section[]): string {
  sections.sort((a, b) => a.nr - b.nr);
  let charset = "utf-8";
  const first = sections[0];
  if (first?.encoded) {
    const quote = first.value.indexOf("'");
    const second = quote < 0 ? -1 : first.value.indexOf("'", quote + 1);
    if (second >= 0) {
      charset = first.value.slice(0, quote) || "utf-8";
      first.value = first.value.slice(second + 1);
    }
  }
  const decoder = decoderFor(charset);
  let result = "";
  let pending = "";
  for (const section of sections) {
    if (section.encoded) {
      pending += section.value;
      continue;
    }
    if (pending) result += decoder.decode(hexEscapedBytes(pending, 0x25, false));
    pending = "";
    result += section.value;
  }
  if (pending) result += decoder.decode(hexEscapedBytes(pending, 0x25, false));
  return result;
}

/**
 * The values parameter `base` has in a field's parameters, each decoded on its own: `plain`
 * (`base=`, every occurrence) and `extended` (`base*=`, then the sections `base*0=`, `base*1*=`…
 * joined). RFC 2047 encoded words are left as they are.
 */
export function parameterValues(params: readonly Parameter[], base: string): { plain: string[]; extended: string[] } {
  const plain: string[] = [];
  const extended: string[] = [];
  const sections: Section[] = [];
  const numbers = new Set<number>();
  for (const { key, value } of params) {
    if (key === base) {
      plain.push(value);
    } else if (key === `${base}*`) {
      extended.push(joinSections([{ nr: 0, value, encoded: true }]));
    } else if (key.startsWith(`${base}*`)) {
      const match = /^(\d{1,6})(\*?)$/.exec(key.slice(base.length + 1));
      if (!match) continue;
      const nr = Number(match[1]);
      if (numbers.has(nr)) continue; // a repeated section: the first one, as postal-mime takes
      numbers.add(nr);
      sections.push({ nr, value, encoded: match[2] === "*" });
    }
  }
  if (sections.length > 0) extended.push(joinSections(sections));
  return { plain, extended };
}
