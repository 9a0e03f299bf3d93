/** Unit tables for the linear decoders: RFC 2047 words, address lists, HTML → text, part file names. */
import { describe, expect, test } from "bun:test";
import { bareLocalPart, parseAddressList } from "../../src/parse/address-list.ts";
import { decodeHeaderBytes } from "../../src/parse/charset.ts";
import { decodeEncodedWords } from "../../src/parse/encoded-words.ts";
import { htmlToText } from "../../src/parse/html-text.ts";
import { partNames } from "../../src/parse/part-names.ts";
import { withCpuMs } from "../helpers/cpu-time.ts";

describe("decodeEncodedWords", () => {
  const cases: [string, string][] = [
    ["plain text", "plain text"],
    ["=?UTF-8?B?6rKs7KCB?=", "견적"],
    ["=?utf-8?q?caf=C3=A9_ok?=", "café ok"],
    ["=?UTF-8?B?6rKs?= =?UTF-8?B?7KCB?=", "견적"], // whitespace between words dropped
    ["=?UTF-8?Q?=EA=B2?= =?UTF-8?Q?=AC?=", "견"], // a character split across two words
    ["=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=  =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=", "テストテスト"],
    ["=?ks_c_5601-1987?B?sN/A+w==?=", "견적"],
    ["=?x-unknown?Q?abc?=", "abc"],
    ["a =?utf-8?Q?b?= c", "a b c"],
    ["=?utf-8?Q?broken", "=?utf-8?Q?broken"],
  ];
  for (const [input, expected] of cases) test(JSON.stringify(input), () => expect(decodeEncodedWords(input)).toBe(expected));
});

describe("partNames (every name in a part's Content-Type / Content-Disposition)", () => {
  const cases: [string, string, string[]][] = [
    ['application/pdf; name="a.pdf"', 'attachment; filename="a.exe"', ["a.pdf", "a.exe"]],
    ['application/pdf; name="a.pdf"', "attachment; filename*=utf-8''a.pdf", ["a.pdf"]], // the same name once
    ["application/pdf", "attachment; filename=\"a.pdf\"; filename*=iso-8859-1''M%FCller.exe", ["a.pdf", "Müller.exe"]],
    ["application/pdf", "attachment; filename*1*=%2Eexe; filename*0*=utf-8'en'%EA%B2%AC; filename*2=\".zip\"", ["견.exe.zip"]],
    ["application/pdf; name==?utf-8?Q?x=2Eexe?=", "attachment", ["x.exe"]],
    ["application/pdf", 'attachment; filename="a\\"b\\".exe" (comment); size=3', ['a"b".exe']],
    ["application/pdf", "attachment; filename=C:\\temp\\a(1).exe (comment)", ["C:\\temp\\a(1).exe"]],
    ["application/pdf; x; name", "inline; flag; filename = \"x.js\" ; name=\"not-a-filename\"", ["x.js"]],
  ];
  for (const [type, disposition, names] of cases) {
    test(`${type} | ${disposition}`, () => {
      expect(partNames([{ key: "content-type", value: type }, { key: "content-disposition", value: disposition }])).toEqual(names);
    });
  }
});

describe("parseAddressList", () => {
  const cases: [string, [string, string][]][] = [
    ["a@b.c", [["", "a@b.c"]]],
    ['"Doe, John" <J@D.com>, x@y.z', [["Doe, John", "J@D.com"], ["", "x@y.z"]]],
    ["Team: a@b.c, b@c.d;, e@f.g", [["", "a@b.c"], ["", "b@c.d"], ["", "e@f.g"]]],
    ["undisclosed-recipients:;", []],
    ["j@d.com (John)", [["John", "j@d.com"]]],
    ["=?UTF-8?B?6rKs7KCB?= <q@x.kr>", [["견적", "q@x.kr"]]],
    ["<@relay.example:user@x.example>", [["", "user@x.example"]]],
    // An angle-addr ends its mailbox when another address follows without a comma (Python's getaddresses).
    ["Bob <bob@x> Bobby <bobby@x>", [["Bob", "bob@x"], ["Bobby", "bobby@x"]]],
    ["Bob <bob@x> bobby@x", [["Bob", "bob@x"], ["", "bobby@x"]]],
    ["<bob@x> (Bob) Bobby <bobby@x>, c@y", [["Bob", "bob@x"], ["Bobby", "bobby@x"], ["", "c@y"]]],
    ["Bob <bob@x> Smith", [["Bob Smith", "bob@x"]]],
    ["no address here", [["no address here", ""]]],
    ['"unterminated <a@b.c>', [["unterminated <a@b.c>", ""]]],
    // Quoted local parts are the address, in one form: a rule for boss@company.com sees them all.
    ['"boss"@company.com', [["", "boss@company.com"]]],
    ['Boss <"boss"@company.com>', [["Boss", "boss@company.com"]]],
    ['"Boss" "boss"@company.com', [["Boss", "boss@company.com"]]],
    ['"john doe"@company.com, "ceo"@company.com', [["", '"john doe"@company.com'], ["", "ceo@company.com"]]],
    ['"a\\"b"@x.example (Q)', [["Q", '"a\\"b"@x.example']]],
    ['"first.last"@x.example', [["", "first.last@x.example"]]],
    // Comments and folding whitespace inside an addr-spec (RFC 5322 CFWS) are not the address:
    // kept, `<ceo@company.com (Chief)>` slipped past a rule for ceo@company.com.
    ["CEO <ceo@company.com (Chief)>", [["CEO", "ceo@company.com"]]],
    ["<ceo(x)@company.com>", [["", "ceo@company.com"]]],
    ["Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>", [["Pete", "pete@silly.test"]]],
    ["<c@(Chris's host.)public.example>", [["", "c@public.example"]]],
    ["A <a @ company.com>", [["A", "a@company.com"]]],
    ['x <"a (b)"@company.com>', [["x", '"a (b)"@company.com']]],
    ["ceo(x)@company.com", [["", "ceo@company.com"]]],
    ["c@(host)public.example", [["", "c@public.example"]]],
    ["a@b.c (one), d@e.f (two)", [["one", "a@b.c"], ["two", "d@e.f"]]],
  ];
  for (const [input, expected] of cases) {
    test(JSON.stringify(input), () => {
      expect(parseAddressList(input, 100).mailboxes.map((m) => [m.name, m.address])).toEqual(expected);
    });
  }

  test("an entry that is one word and no '@' is also that local part (Python's reading), never a quoted or encoded name", () => {
    const local = (value: string) => parseAddressList(value, 100).mailboxes.map((m) => [m.name, m.address, m.localPart ?? null]);
    expect(local("alice@x.example, eryq")).toEqual([["", "alice@x.example", null], ["eryq", "", "eryq"]]);
    expect(local("Eryq (comment)")).toEqual([["Eryq", "", "Eryq"]]);
    expect(local('"Eryq Jones", no address here, =?utf-8?q?J=C3=B6rg?=, a..b')).toEqual([["Eryq Jones", "", null], ["no address here", "", null], ["Jörg", "", null], ["a..b", "", null]]);
    // An encoded word that a ':' in its text cut as a group name would: no local part either.
    expect(local("=?utf-8?Q?date=3E2017-08-20T10:08:28.617=3C/pr?=")).toEqual([["28.617=3C/pr?=", "", null]]);
  });

  test("an unquoted 'Last, First <address>' lists no surname as a local part; a bare word at the end or alone still is one", () => {
    const listed = (value: string) => {
      const { mailboxes } = parseAddressList(value, 100);
      return mailboxes.map((m, i) => m.address || bareLocalPart(mailboxes, i)).filter((a) => a !== "");
    };
    expect(listed("Smith, John <john@company.com>, Doe, Jane <jane@company.com>")).toEqual(["john@company.com", "jane@company.com"]);
    expect(listed("alice@x.example, eryq")).toEqual(["alice@x.example", "eryq"]);
    expect(listed("eryq, bob@x.example")).toEqual(["eryq", "bob@x.example"]);
    expect(listed("MAILER-DAEMON")).toEqual(["MAILER-DAEMON"]);
  });

  test("stops at the mailbox cap and says so", () => {
    const list = parseAddressList("a@x, b@x, c@x, d@x", 2);
    expect(list.mailboxes.map((m) => m.address)).toEqual(["a@x", "b@x"]);
    expect(list.truncated).toBe(true);
    expect(parseAddressList("a@x, b@x", 2).truncated).toBe(false);
    expect(parseAddressList("A <a@x> B <b@x>", 1)).toEqual({ mailboxes: [{ name: "A", address: "a@x" }], truncated: true });
  });
});

describe("htmlToText", () => {
  const cases: [string, string][] = [
    ["<p>Hello</p><p>World</p>", "Hello\n\nWorld"],
    ["a<br>b<br/>c", "a\nb\nc"],
    ["<script>var x = '<p>no</p>';</script>yes", "yes"],
    ["<style>p{}</style><!-- c -->text", "text"],
    ["&amp; &lt;tag&gt; &#x41;&#66; &nbsp;&unknown; &#0;", "& <tag> AB &unknown; \ufffd"],
    ["&constructor; &toString; &__proto__; &hasOwnProperty; ok", "&constructor; &toString; &__proto__; &hasOwnProperty; ok"],
    ["caf&eacute; f&uuml;r &Auml;rger &szlig; &ntilde; &ccedil;a &AElig;&oelig; &frac12; &AMP;", "café für Ärger ß ñ ça Æœ ½ &"],
    ["<td>a</td><td>b</td>", "a b"],
    ["keep < this", "keep < this"], // '<' before a space is text to a browser
    ["keep <b this", "keep"], // an unclosed tag is not
    ["<XMP>a<b &amp;</XmP >c<plaintext></plaintext>&lt;", "a<b &amp;\nc\n</plaintext>&lt;"], // text as written
    ["&NBSP;&Amp;&THETA; &TRADE;&Theta;", "&NBSP;&Amp;&THETA; ™Θ"], // names are case-sensitive
    ["<a <!-- <script", ""],
    ["  lots   of\n\n  space  ", "lots of space"],
  ];
  for (const [input, expected] of cases) test(JSON.stringify(input), () => expect(htmlToText(input, 1000)).toBe(expected));

  test("output is capped", () => {
    expect(htmlToText("<p>word</p>".repeat(1000), 50).length).toBe(50);
  });

  // Each text run used to search on for '&' to the end of the document, and each '&' for a
  // ';': quadratic, ~5 s for either 2 MB input below (found by fuzzing with corpus HTML).
  test("linear: 2 MB of tags and no '&', or of '&' and no ';', each well under a second", () => {
    for (const html of ["<b>x".repeat(500_000), "a & b ".repeat(350_000)]) {
      const { value: text, ms } = withCpuMs(() => htmlToText(html, 1_000_000));
      expect(ms).toBeLessThan(1000);
      expect(text.startsWith(html.startsWith("<b>") ? "xxx" : "a & b a & b")).toBe(true);
    }
  });

  // A name is read for at most the longest name's length (31): 4 MB of names that show as nothing
  // (no output cap stops them) or of near misses of the longest name.
  test("linear: 4 MB of invisible entities, or of '&' and long words, each well under a second", () => {
    for (const html of ["&NegativeVeryThinSpace;&shy&Tab;".repeat(120_000), "&CounterClockwiseContourIntegralx ".repeat(120_000)]) {
      const { value: text, ms } = withCpuMs(() => htmlToText(html, 1_000_000));
      expect(ms).toBeLessThan(1000);
      expect(text.slice(0, 5)).toBe(html.startsWith("&N") ? "" : "&Coun");
    }
  });

  test("linear: 4 MB of xmp elements, or one unclosed xmp of end tags, each well under a second", () => {
    for (const html of ["<xmp>x</xmp>".repeat(350_000), `<xmp>${"</b>".repeat(1_000_000)}`]) {
      const { value: text, ms } = withCpuMs(() => htmlToText(html, 1_000_000));
      expect(ms).toBeLessThan(1000);
      expect(text.startsWith(html.endsWith("</xmp>") ? "x\n\nx\n\nx" : "</b></b>")).toBe(true);
    }
  });

  test("linear: 4 MB of textarea elements, or one unclosed textarea of end tags and references, each well under a second", () => {
    for (const html of ["<textarea>x</textarea>".repeat(200_000), `<textarea>${"</b>&amp;".repeat(400_000)}`]) {
      const { value: text, ms } = withCpuMs(() => htmlToText(html, 1_000_000));
      expect(ms).toBeLessThan(1000);
      expect(text.startsWith(html.endsWith("</textarea>") ? "x\n\nx\n\nx" : "</b>&</b>&")).toBe(true);
    }
  });
});

describe("decodeHeaderBytes (raw 8-bit header bytes)", () => {
  const bytes = (...parts: (string | number[])[]): Uint8Array =>
    Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "utf8") : Buffer.from(p))));
  test("valid UTF-8 is UTF-8; Latin-1 with no charset declared is windows-1252", () => {
    expect(decodeHeaderBytes(bytes("Jürgen"), null)).toBe("Jürgen");
    expect(decodeHeaderBytes(bytes("J", [0xfc], "rgen Caf", [0xe9]), null)).toBe("Jürgen Café");
  });
  test("UTF-8 with one stray byte (no charset declared) stays UTF-8 with one U+FFFD, not mojibake", () => {
    // flanker's mailformed-headers.eml: a Cyrillic name whose last character was cut.
    expect(decodeHeaderBytes(bytes("Юникод запрещен", [0xf1]), null)).toBe("Юникод запрещен\uFFFD");
  });
  test("a declared charset still wins over the UTF-8 guess (raw EUC-KR headers)", () => {
    expect(decodeHeaderBytes(bytes([0xb0, 0xdf, 0xc0, 0xfb]), "euc-kr")).toBe("견적");
  });
});
