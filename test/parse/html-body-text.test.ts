/**
 * The `body` of an HTML-only message is the text a reader sees in it (found by a differential of
 * the corpus against Python's email package and html.parser): HTML 4's Greek and symbol entities
 * are decoded (PHP's htmlentities() writes Greek text that way), so are the legacy ones a browser
 * reads without ';', and a '<' that opens no tag (`I <3 you`, `< 5 EUR`) is text, not the start of
 * a tag that swallowed everything to the next '>'.
 */
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { extractFacts } from "../../src/parse/extract.ts";
import { htmlToText } from "../../src/parse/html-text.ts";
import { htmlEntities } from "../../node_modules/postal-mime/src/html-entities.ts";
import { renderTable, TABLE_PATH } from "../../scripts/gen-html-entities.ts";
import { classify } from "../../src/rules/classify.ts";
import { parseRules } from "../../src/rules/load.ts";
import type { Envelope } from "../../src/types.ts";

const ENVELOPE: Envelope = { mailFrom: "x@example.org", rcptTo: ["sales@company.com"], clientIp: "192.0.2.1", helo: "mx.example.org", tls: false };

/** MailCore/mailcore2 unittest/data/summary/input/2195-greek.eml (BSD-3-Clause), a Cosmote e-bill. */
const GREEK = "/work/shared/corpus/mailcore2/2195-greek.eml";

/** Lines 55-62 of that message's quoted-printable HTML body (cut to its sentence, the first at its start and the last at its end), under its own header. */
const GREEK_EXCERPT = [
  "From: <eBill@cosmote.gr>",
  "To: <sales@company.com>",
  "MIME-Version: 1.0",
  "Content-Type: text/html",
  "Content-Transfer-Encoding: quoted-printable",
  "",
  "<html><body><p>=CE=B3=CE=B9=CE=B1 =CE=AC=CE=BC=CE=B5=CF=83=CE=B7 =CF=80=CF=81=CF=",
  "=8C=CF=83=CE=B2=CE=B1=CF=83=CE=B7 =CF=83=CF=84=CE=B7=CE=BD =CF=85=CF=80=CE=",
  "=B7=CF=81=CE=B5=CF=83=CE=AF=CE=B1 e-Bill =CE=BA=CE=B1=CE=B9 =CE=B5=CE=BD=CE=",
  "=B7=CE=BC=CE=B5=CF=81=CF=89=CE=B8=CE=B5=CE=AF=CF=84=CE=B5 =CE=B3=CE=B9=CE=",
  "=B1 &tau;=CE=B1 =CE=B1=CE=BD=CE=B1=CE=BB=CF=85=CF=84=CE=B9=CE=BA=CE=AC =CF=",
  "=83=CF=84=CE=BF=CE=B9=CF=87=CE=B5=CE=AF=CE=B1 =CF=84=CE=BF=CF=85 =CE=BB=CE=",
  "=BF=CE=B3=CE=B1=CF=81=CE=B9=CE=B1=CF=83=CE=BC=CE=BF=CF=8D =CF=83=CE=B1=CF=",
  "=82.</p></body></html>",
  "",
].join("\r\n");

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: bill-details, priority: 20, action: drop, category: bill, conditions: [{ field: body, operator: contains, value: "για τα αναλυτικά στοιχεία" }] }
  - { name: wire, priority: 10, action: reject, category: fraud, conditions: [{ field: body, operator: contains, value: wire the money }] }
`;

function decide(facts: Parameters<typeof classify>[0]): string | null {
  const parsed = parseRules(RULES, "rules.yaml");
  if (!parsed.ok) throw new Error("rules did not compile");
  return classify(facts, parsed.rules).decision.rule;
}

test("a Greek HTML e-bill's &tau; is τ: the body rule for its words matches (real message)", async () => {
  const facts = await extractFacts(new TextEncoder().encode(GREEK_EXCERPT), ENVELOPE);
  expect(facts.body).toContain("ενημερωθείτε για τα αναλυτικά στοιχεία του λογαριασμού σας.");
  expect(decide(facts)).toBe("bill-details");
  if (!existsSync(GREEK)) return;
  const whole = await extractFacts(readFileSync(GREEK), ENVELOPE);
  expect(whole.body).not.toContain("&tau;");
  expect(decide(whole)).toBe("bill-details");
});

test("HTML 4's entities: Greek letters, arrows, math and card suits", () => {
  expect(htmlToText("&Alpha;&Omega;&alpha;&sigmaf;&sigma;&omega;&thetasym;", 100)).toBe("ΑΩαςσωϑ");
  expect(htmlToText("&rarr;&hArr;&le;&ne;&infin;&hearts;&lang;x&rang;&dagger;&permil;", 100)).toBe("→⇔≤≠∞♥⟨x⟩†‰");
});

test("the legacy entities a browser reads without ';', and numbers without it", () => {
  expect(htmlToText("Bonjour&nbspmonde, a &amp b, &copy2024, &notit;, &#65B &#x42;", 100)).toBe("Bonjour monde, a & b, ©2024, ¬it;, AB B");
  expect(htmlToText("&unknown &toString &constructor;", 100)).toBe("&unknown &toString &constructor;");
});

test("a '<' that opens no tag is text: the words after it reach the rules", async () => {
  expect(htmlToText("<p>I <3 you, wire the money</p><p>ok</p>", 100)).toBe("I <3 you, wire the money\n\nok");
  expect(htmlToText("<p>price < 5 EUR & up > 3</p>", 100)).toBe("price < 5 EUR & up > 3");
  expect(htmlToText("<p>a</p></ x>b<!x>c<?x>d", 100)).toBe("a\nbcd");
  const raw = "From: a@x.example\r\nTo: sales@company.com\r\nContent-Type: text/html\r\n\r\n<p>I <3 you, wire the money today</p>\r\n";
  expect(decide(await extractFacts(new TextEncoder().encode(raw), ENVELOPE))).toBe("wire");
});

/**
 * HTML's named references (the WHATWG list, as postal-mime ships it): each is read as that list
 * says, with a ';' and (the legacy ones) without; a space of any width is a space and an
 * invisible character (soft hyphen, zero-width joiners and space, word joiner, invisible
 * operators) is nothing, so words stay whole. A name that differs from one only in case, which
 * a browser shows as written when no name is a prefix of it (`&NBSP;`, `&THETA;`), is shown as
 * written too, and so is a name of HTML 5 without its ';' (`&Tab`, `&period`).
 */
test("named references as the WHATWG list reads them, case-sensitively", () => {
  const whatwg = new Map(Object.entries(htmlEntities).map(([key, value]) => [key.slice(1), value]));
  const legacy = [...whatwg.keys()].filter((n) => !n.endsWith(";"));
  const shown = (value: string) => (/^\s+$/u.test(value) ? " " : value.replace(/[\u00ad\u200b-\u200d\u2060-\u2063]/gu, ""));
  for (const [name, value] of whatwg) expect([name, htmlToText(`x&${name}y`, 100)]).toEqual([name, `x${shown(value)}y`]);
  for (const name of whatwg.keys()) {
    const bare = name.replace(/;$/, "");
    if (whatwg.has(bare) || legacy.some((key) => bare.startsWith(key))) continue;
    expect(htmlToText(`x&${bare} y`, 100)).toBe(`x&${bare} y`);
  }
  const variants = [...whatwg.keys()].filter((n) => n.endsWith(";")).flatMap((n) => [n.toUpperCase(), n.toLowerCase(), n[0]!.toUpperCase() + n.slice(1).toLowerCase()]);
  for (const name of new Set(variants)) {
    if (whatwg.has(name) || [...whatwg.keys()].some((key) => name.startsWith(key))) continue;
    expect(htmlToText(`x&${name}y`, 100)).toBe(`x&${name}y`);
  }
});

test("HTML 5's names, and the longest name first: &centerdot; is ·, not ¢ and 'erdot;'", () => {
  expect(htmlToText("a&centerdot;b &period;&Lt;&NewLine;&Tab;&CounterClockwiseContourIntegral;", 100)).toBe("a·b .≪ ∳");
  // Without ';' only a legacy name is read, the longest that starts the run: as a browser shows them.
  expect(htmlToText("&centerdot &notin &notin; &ampx &Tab &CounterClockwiseContourIntegralx;", 100)).toBe("¢erdot ¬in ∉ &x &Tab &CounterClockwiseContourIntegralx;");
  expect(htmlToText("wi&ZeroWidthSpace;re tr&NoBreak;ans&shy;fer", 100)).toBe("wire transfer");
});

test("the entity table is what scripts/gen-html-entities.ts makes of postal-mime's list", () => {
  expect(readFileSync(TABLE_PATH, "utf8")).toBe(renderTable());
});
