/**
 * `mailgw test message.eml` (a subprocess, as an admin runs it) on HTML-only messages whose text
 * a browser (and so a mail client: Thunderbird's and Chromium's HTML parsers) shows, but that
 * mailgw's HTML-to-text step read differently, so a `body` rule on the words the reader sees
 * missed them. Checked against Chromium's rendering (innerText) of the same markup.
 */
import { expect, test } from "bun:test";
import { dryRunner } from "./dry-run.ts";

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: wire-fraud
    priority: 100
    category: fraud
    action: reject
    conditions:
      - { field: body, operator: contains, value: send the wire transfer today }
  - name: euro-amount
    priority: 90
    category: fraud
    action: reject
    conditions:
      - { field: body, operator: contains, value: "€5000" }
  - name: research
    priority: 80
    category: internal
    action: archive
    conditions:
      - { field: body, operator: contains, value: "R&D budget" }
`;

const dryRun = dryRunner("html-text-s10-cli-", RULES);

const HEAD = "From: a@partner.example\r\nTo: sales@company.com\r\nSubject: hi\r\nContent-Type: text/html; charset=utf-8\r\n\r\n";

/** The rule `mailgw test FILE --json` decides for an HTML-only message of `html`. */
async function ruleFor(name: string, html: string): Promise<string | null> {
  return (await dryRun(name, `${HEAD}${html}\r\n`)).decision.rule ?? null;
}

test("the plain message matches (the rules are right)", async () => {
  expect(await ruleFor("plain", "<p>Please send the wire transfer today</p>")).toBe("wire-fraud");
});

test("a numeric reference with leading zeros (any number of digits, as browsers read it) or naming a C1 code point (Windows-1252's character)", async () => {
  expect(await ruleFor("zeros", "<p>Please send the wire tr&#00000097;nsfer today</p>")).toBe("wire-fraud");
  expect(await ruleFor("zeros-hex", "<p>Please send the wire tr&#x00000061nsfer today</p>")).toBe("wire-fraud");
  expect(await ruleFor("c1-euro", "<p>Pay &#128;5000 now</p>")).toBe("euro-amount");
});

test("comments end where a browser ends them: '<!-->' and '<!--->' are empty comments, '--!>' closes one", async () => {
  expect(await ruleFor("abrupt", "<p><!-->Please send the wire transfer today<!-- --></p>")).toBe("wire-fraud");
  expect(await ruleFor("abrupt-dash", "<p><!--->Please send the wire transfer today<!-- --></p>")).toBe("wire-fraud");
  expect(await ruleFor("bang", "<p><!-- x --!>Please send the wire transfer today<!-- --></p>")).toBe("wire-fraud");
});

test("a '>' inside a quoted attribute value does not end the tag (a quote opens a value only after '=')", async () => {
  expect(await ruleFor("quoted-gt", `<p>Please send the wire tr<b title=">">ansfer</b> today</p>`)).toBe("wire-fraud");
  expect(await ruleFor("quoted-gt-single", "<p>Please send the wire tr<span data-x='a>b' >ansfer</span> today</p>")).toBe("wire-fraud");
  // A quote that opens no value (part of a name) leaves the first '>' as the end, as in a browser.
  expect(await ruleFor("name-quote", "<p>Please send the wire tr<b x'>ansfer</b> today</p>")).toBe("wire-fraud");
});

test("xmp and plaintext content is text as written, as a browser shows it: a '<' and a letter in it open no tag", async () => {
  expect(await ruleFor("xmp", "<xmp>if a<b send the wire transfer today</xmp>")).toBe("wire-fraud");
  expect(await ruleFor("xmp-comment", "<xmp>Please send the wire <!-- -->transfer today</xmp>")).toBe(null);
  expect(await ruleFor("plaintext", "<plaintext>Note: a<b send the wire transfer today</plaintext>")).toBe("wire-fraud");
});

test("entity names are case-sensitive: &NBSP; is shown as written, &AMP; (one of HTML's capitalized names) is &", async () => {
  expect(await ruleFor("nbsp-upper", "<p>Please send the wire&NBSP;transfer today</p>")).toBe(null);
  expect(await ruleFor("nbsp", "<p>Please send the wire&nbsp;transfer today</p>")).toBe("wire-fraud");
  expect(await ruleFor("amp-upper", "<p>The R&AMP;D budget</p>")).toBe("research");
});

test("HTML 5's names read as a browser shows them (&Tab;, &NewLine;, &period;; invisible ones as nothing)", async () => {
  expect(await ruleFor("html5-names", "<p>Please&Tab;send the wire&NewLine;transfer today&period;</p>")).toBe("wire-fraud");
  expect(await ruleFor("invisible", "<p>Please send the wi&ZeroWidthSpace;re tr&NoBreak;ansfer today</p>")).toBe("wire-fraud");
});

test("textarea content is text with its references decoded, as a browser shows it: a '<' and a letter in it open no tag", async () => {
  expect(await ruleFor("textarea", "<textarea>if a<b send the wire transfer today</textarea>")).toBe("wire-fraud");
  expect(await ruleFor("textarea-tags", "<textarea>Please send the wire <b>transfer</b> today</textarea>")).toBe(null);
  expect(await ruleFor("textarea-ref", "<textarea readonly>The R&amp;D budget</textarea>")).toBe("research");
  expect(await ruleFor("textarea-after", "<textarea>x</textarea><p>Please send the wire transfer today</p>")).toBe("wire-fraud");
});

test("noscript content is shown (a mail reader runs no script): its text is body text", async () => {
  expect(await ruleFor("noscript", "<script>x()</script><noscript><p>Please send the wire transfer today</p></noscript>")).toBe("wire-fraud");
});

test("a head without its end tag (HTML lets it be left out) ends where a browser ends it: the body's words are body text", async () => {
  expect(await ruleFor("head-open", "<html><head><title>Invoice</title><body><p>Please send the wire transfer today</p></body></html>")).toBe("wire-fraud");
  expect(await ruleFor("head-style", "<head><style>p { color: red }</style><p>Please send the wire transfer today</p>")).toBe("wire-fraud");
  // Chromium with scripting off (a mail reader): text in a head's noscript ends the head and is shown.
  expect(await ruleFor("head-noscript", "<head><noscript>Please send the wire transfer today</noscript></head><body>Hi</body>")).toBe("wire-fraud");
  // What a head holds that no reader shows stays out: its title, style, noframes.
  expect(await ruleFor("head-hidden", "<head><title>Please send the wire transfer today</title><noframes>Please send the wire transfer today</noframes></head><body>Hi</body>")).toBe(null);
});
