/**
 * lintRules: every error and warning, each asserted at its exact line and column (the
 * offending key or value), and the loader refusing exactly what lint refuses.
 */
import { describe, expect, test } from "bun:test";
import { lintRules, parseRules } from "../../src/rules/load.ts";
import { withCpuMs } from "../helpers/cpu-time.ts";

type Expected = [line: number, col: number, severity: "error" | "warning", code: string];

function found(text: string): Expected[] {
  return lintRules(text, "rules.yaml").map((d) => [d.line, d.col, d.severity, d.code]);
}

/** A file with domains and one rule whose body lines are given (indented 4). */
function rule(...lines: string[]): string {
  return `domains: [company.com]\nrules:\n  - name: r\n${lines.map((l) => `    ${l}`).join("\n")}\n`;
}

const SUBJECT_EXISTS = "conditions: [{ field: subject, operator: exists }]";

const ERROR_CASES: [string, string, Expected[]][] = [
  ["YAML syntax error", "domains: [company.com\nrules: []\n", [[1, 10, "error", "yaml-syntax"]]],
  ["duplicate YAML key", "domains: [company.com]\ndomains: [other.com]\n", [[2, 1, "error", "yaml-syntax"]]],
  ["empty file", "# only a comment\n", [[1, 1, "error", "empty-file"]]],
  // Pasted no-break spaces: at the line and column where they are (the library named the next line).
  ["no-break spaces as indentation", rule("action: drop", "\u00a0\u00a0\u00a0\u00a0priority: 5", SUBJECT_EXISTS), [[5, 5, "error", "yaml-syntax"]]],
  ["a no-break space after key:", rule("action:\u00a0drop", SUBJECT_EXISTS), [[4, 12, "error", "yaml-syntax"]]],
  ["a no-break space after -", "domains: [company.com]\nrules:\n  -\u00a0name: r\n    action: drop\n", [[3, 4, "error", "yaml-syntax"]]],
  ["an ideographic space as indentation", rule("action: drop", "\u3000\u3000priority: 5", SUBJECT_EXISTS), [[5, 5, "error", "yaml-syntax"]]],
  ["top level is not a mapping", "- a\n- b\n", [[1, 1, "error", "invalid-type"]]],
  ["unknown top-level key", "domains: [company.com]\nrulez: []\n", [[2, 1, "error", "unknown-key"]]],
  ["unknown rule key", rule("action: drop", "prority: 5", SUBJECT_EXISTS), [[5, 5, "error", "unknown-key"]]],
  ["unknown condition key", rule("action: drop", "conditions:", "  - { field: subject, operator: exists, nott: true }"), [[6, 45, "error", "unknown-key"]]],
  ["unknown field", rule("action: drop", "conditions:", "  - { field: subjekt, operator: exists }"), [[6, 18, "error", "unknown-field"]]],
  ["a field SPEC marks planned", rule("action: drop", "conditions:", "  - { field: arc, operator: equals, value: pass }"), [[6, 18, "error", "planned-field"]]],
  ["header: without a name", rule("action: drop", "conditions:", "  - { field: 'header:', operator: exists }"), [[6, 18, "error", "unknown-field"]]],
  ["unknown operator", rule("action: drop", "conditions:", "  - { field: subject, operator: matches, value: x }"), [[6, 37, "error", "unknown-operator"]]],
  ["gt on subject", rule("action: drop", "conditions:", "  - { field: subject, operator: gt, value: 5 }"), [[6, 37, "error", "operator-field-mismatch"]]],
  ["in_cidr on subject", rule("action: drop", "conditions:", "  - { field: subject, operator: in_cidr, value: 10.0.0.0/8 }"), [[6, 37, "error", "operator-field-mismatch"]]],
  ["contains on size", rule("action: drop", "conditions:", "  - { field: size, operator: contains, value: 5 }"), [[6, 34, "error", "operator-field-mismatch"]]],
  ["regex on tls", rule("action: drop", "conditions:", "  - { field: tls, operator: regex, value: x }"), [[6, 33, "error", "operator-field-mismatch"]]],
  ["invalid regex", rule("action: drop", "conditions:", "  - { field: subject, operator: regex, value: '([a-z]' }"), [[6, 51, "error", "invalid-regex"]]],
  ["stateful regex flag", rule("action: drop", "conditions:", "  - { field: subject, operator: regex, value: x, flags: gi }"), [[6, 61, "error", "invalid-regex-flags"]]],
  ["unknown regex flag", rule("action: drop", "conditions:", "  - { field: subject, operator: regex, value: x, flags: q }"), [[6, 61, "error", "invalid-regex-flags"]]],
  ["flags on a non-regex operator", rule("action: drop", "conditions:", "  - { field: subject, operator: contains, value: x, flags: i }"), [[6, 57, "error", "invalid-key"]]],
  ["missing forward_to", rule("action: forward", SUBJECT_EXISTS), [[4, 13, "error", "missing-forward-to"]]],
  ["empty forward_to", rule("action: forward", "forward_to: []", SUBJECT_EXISTS), [[5, 17, "error", "missing-forward-to"]]],
  ["invalid forward_to address", rule("action: forward", "forward_to: [ok@other.example, 'bad%hack@other.example']", SUBJECT_EXISTS), [[5, 36, "error", "invalid-address"]]],
  ["forward_to without @", rule("action: forward", "forward_to: nobody", SUBJECT_EXISTS), [[5, 17, "error", "invalid-address"]]],
  // A Postfix relay answers 501 to RCPT TO:<-ops@…>: every forward would fail after our 250.
  ["forward_to local part starting with '-'", rule("action: forward", "forward_to: [ok-@other.example, -ops@other.example]", SUBJECT_EXISTS), [[5, 37, "error", "invalid-address"]]],
  ["missing url", rule("action: webhook", SUBJECT_EXISTS), [[4, 13, "error", "missing-url"]]],
  ["invalid url", rule("action: webhook", "url: ftp://files.example/x", SUBJECT_EXISTS), [[5, 10, "error", "invalid-url"]]],
  ["unknown action", rule("action: forwrd", SUBJECT_EXISTS), [[4, 13, "error", "unknown-action"]]],
  ["missing action", rule(SUBJECT_EXISTS), [[3, 5, "error", "missing-key"]]],
  ["invalid name", "domains: [company.com]\nrules:\n  - name: Spam_Rule\n    action: drop\n    " + SUBJECT_EXISTS + "\n", [[3, 11, "error", "invalid-name"]]],
  ["negative priority", rule("priority: -1", "action: drop", SUBJECT_EXISTS), [[4, 15, "error", "invalid-priority"]]],
  ["fractional priority", rule("priority: 1.5", "action: drop", SUBJECT_EXISTS), [[4, 15, "error", "invalid-priority"]]],
  ["priority not a number", rule("priority: high", "action: drop", SUBJECT_EXISTS), [[4, 15, "error", "invalid-priority"]]],
  ["invalid CIDR", rule("action: drop", "conditions:", "  - { field: client_ip, operator: in_cidr, value: [10.0.0.0/8, 300.1.1.1] }"), [[6, 68, "error", "invalid-cidr"]]],
  // cidr-tools reads these as other networks (2001:db8:ac::/48) instead of refusing them.
  ["IPv6 CIDR with a non-hex group", rule("action: drop", "conditions:", "  - { field: client_ip, operator: in_cidr, value: [10.0.0.0/8, '2001:db8:acme::/48'] }"), [[6, 68, "error", "invalid-cidr"]]],
  ["IPv6 CIDR with two ::", rule("action: drop", "conditions:", "  - { field: client_ip, operator: in_cidr, value: 'fe80::1::2/64' }"), [[6, 55, "error", "invalid-cidr"]]],
  ["IPv6 CIDR with nine groups", rule("action: drop", "conditions:", "  - { field: client_ip, operator: in_cidr, value: '1:2:3:4:5:6:7:8:9/64' }"), [[6, 55, "error", "invalid-cidr"]]],
  ["IPv4 prefix beyond 32", rule("action: drop", "conditions:", "  - { field: client_ip, operator: in_cidr, value: 10.0.0.0/33 }"), [[6, 55, "error", "invalid-cidr"]]],
  // Left unresolved by the yaml library without an error: the target was dropped silently.
  ["alias without an anchor in forward_to", rule("action: forward", "forward_to: [ops@other.example, *oncall]", SUBJECT_EXISTS), [[5, 37, "error", "unknown-alias"]]],
  ["missing conditions", rule("action: drop"), [[3, 5, "error", "missing-conditions"]]],
  ["empty conditions", rule("action: drop", "conditions: []"), [[5, 17, "error", "missing-conditions"]]],
  ["domains not a list", "domains: company.com\nrules: []\n", [[1, 10, "error", "invalid-domains"]]],
  ["invalid domain", "domains: [company.com, 'user@company.com', localhost]\nrules: []\n", [[1, 24, "error", "invalid-domain"], [1, 44, "error", "invalid-domain"]]],
  ["exists with a value", rule("action: drop", "conditions:", "  - { field: subject, operator: exists, value: x }"), [[6, 45, "error", "invalid-value"]]],
  ["missing value", rule("action: drop", "conditions:", "  - { field: subject, operator: contains }"), [[6, 9, "error", "missing-value"]]],
  ["missing field", rule("action: drop", "conditions:", "  - { operator: exists }"), [[6, 9, "error", "missing-key"]]],
  ["bad auth result", rule("action: drop", "conditions:", "  - { field: spf, operator: equals, value: passed }"), [[6, 48, "error", "invalid-value"]]],
  ["tls not boolean", rule("action: drop", "conditions:", "  - { field: tls, operator: equals, value: yes }"), [[6, 48, "error", "invalid-value"]]],
  ["size not a size", rule("action: drop", "conditions:", "  - { field: size, operator: gt, value: big }"), [[6, 45, "error", "invalid-value"]]],
  ["archive with reject", rule("action: reject", "archive: true", SUBJECT_EXISTS), [[5, 14, "error", "invalid-value"]]],
  ["reject_message with CRLF", rule("action: reject", 'reject_message: "bye\\r\\n250 ok"', SUBJECT_EXISTS), [[5, 21, "error", "invalid-value"]]],
  ["not is not a boolean", rule("action: drop", "conditions:", "  - { field: subject, operator: exists, not: maybe }"), [[6, 50, "error", "invalid-type"]]],
  ["match is not all/any", rule("action: drop", "match: some", SUBJECT_EXISTS), [[5, 12, "error", "invalid-value"]]],
];

describe("errors point at the offending key or value", () => {
  test.each(ERROR_CASES)("%s", (_name, text, expected) => {
    expect(found(text)).toEqual(expected);
    expect(parseRules(text, "rules.yaml").ok).toBe(false);
  });

  test("an odd space is named by what it is; inside a quoted value, or a BOM starting the file, it is no problem", () => {
    expect(lintRules(rule("action: drop", "\u00a0\u00a0\u00a0\u00a0priority: 5", SUBJECT_EXISTS), "f").map((d) => d.message)).toEqual([
      "a no-break space (U+00A0) where YAML needs a plain space (pasted from a web page or a document?): retype it as a space",
    ]);
    expect(found(rule("action: drop", "conditions:", "  - { field: subject, operator: contains, value: 'a:\u00a0b' }"))).toEqual([]);
    expect(found(`\ufeff${rule("action: drop", SUBJECT_EXISTS)}`)).toEqual([]);
    // A quoted or block value wrapped after a no-break space keeps it as text: no problem there.
    for (const value of ['"Facture\n          \u00a0: disponible"', "'a:\n          -\u00a0b'", ">-\n          Facture\n          \u00a0disponible"]) {
      expect(found(rule("action: drop", "conditions:", "  - field: subject", "    operator: contains", `    value: ${value}`))).toEqual([]);
    }
  });

  test("duplicate rule names: the second name is reported, naming the first's line", () => {
    const text = `domains: [company.com]
rules:
  - name: same
    action: drop
    ${SUBJECT_EXISTS}
  - name: same
    action: drop
    ${SUBJECT_EXISTS}
`;
    const diagnostics = lintRules(text, "rules.yaml");
    expect(diagnostics.map((d) => [d.line, d.col, d.code])).toEqual([[6, 11, "duplicate-name"]]);
    expect(diagnostics[0]?.message).toContain("first defined at line 3");
  });

  test("duplicate rule names that YAML reads as numbers (name: 2024, and the quoted \"2024\") are reported too", () => {
    const text = `domains: [company.com]
rules:
  - name: 2024
    action: drop
    ${SUBJECT_EXISTS}
  - name: 2024
    action: archive
    ${SUBJECT_EXISTS}
  - name: "2024"
    action: archive
    ${SUBJECT_EXISTS}
`;
    const diagnostics = lintRules(text, "rules.yaml");
    expect(diagnostics.filter((d) => d.severity === "error").map((d) => [d.line, d.col, d.code])).toEqual([[6, 11, "duplicate-name"], [9, 11, "duplicate-name"]]);
    expect(diagnostics[0]?.message).toBe("duplicate rule name '2024' (first defined at line 3)");
    expect(parseRules(text, "rules.yaml").ok).toBe(false);
  });

  test("a YAML merge key is named as such, at the '<<'", () => {
    const text = "domains: [company.com]\nbase: &base { action: drop }\nrules:\n  - <<: *base\n    name: r\n    " + SUBJECT_EXISTS + "\n";
    const merge = lintRules(text, "rules.yaml").find((d) => d.message.includes("merge keys"));
    expect(merge).toMatchObject({ line: 4, col: 5, severity: "error", code: "unknown-key" });
    expect(merge?.message).toBe("YAML merge keys ('<<: *anchor') are not supported in a rule: write the keys out in each one");
  });

  test("a merge key under a %YAML 1.1 directive (where the library reads '<<' as a symbol) is named as such too", () => {
    const text = "%YAML 1.1\n---\ndomains: [company.com]\nrules:\n  - name: r\n    <<: { action: drop }\n    " + SUBJECT_EXISTS + "\n";
    const diagnostics = lintRules(text, "rules.yaml");
    expect(diagnostics.map((d) => [d.line, d.col, d.code])).toContainEqual([6, 5, "unknown-key"]);
    expect(diagnostics.find((d) => d.line === 6)?.message).toBe("YAML merge keys ('<<: *anchor') are not supported in a rule: write the keys out in each one");
  });

  // Absolute and http://, so "write an absolute http:// URL" alone did not say what was wrong.
  test("a webhook url with an IPv6 address not in brackets says so; a bracketed one is valid", () => {
    const messages = (url: string) => lintRules(rule("action: webhook", `url: "${url}"`, SUBJECT_EXISTS), "f").map((d) => d.message);
    for (const url of ["http://::1:8080/in", "https://2001:db8::5/hook", "http://user@fe80::1:80/x"]) {
      const shown = url.replace("user@", "…@"); // a login is never quoted (the message reaches serve's log)
      expect(messages(url)).toEqual([`invalid url '${shown}'; an IPv6 address goes in brackets, e.g. http://[2001:db8::5]:8080/hook`]);
    }
    expect(messages("http://[::1]:8080/in")).toEqual([]);
    expect(messages("ftp://files.example/x")).toEqual(["invalid url 'ftp://files.example/x'; write an absolute http:// or https:// URL"]);
  });

  test("unknown names come with a suggestion", () => {
    const messages = lintRules(rule("action: drop", "conditions:", "  - { field: subjct, operator: containz, value: x }"), "f").map((d) => d.message);
    expect(messages[0]).toContain("did you mean 'subject'?");
  });

  test("a huge or multi-line value is quoted cut to 80 characters with its length, on one line", () => {
    const huge = "x".repeat(100_000);
    const [name] = lintRules(`domains: [company.com]\nrules:\n  - name: ${huge}_\n    action: drop\n    ${SUBJECT_EXISTS}\n`, "rules.yaml");
    expect(name?.code).toBe("invalid-name");
    expect(name?.message).toBe(`rule name '${"x".repeat(60)}…' (100,001 characters) must be 1 to 64 characters of a-z, 0-9 and -`);
    const [field] = lintRules(rule("action: drop", "conditions:", '  - { field: "sub\\nject", operator: exists }'), "rules.yaml");
    expect(field?.message).toStartWith("unknown field 'sub\\u000aject'");
    expect(field?.message).not.toContain("\n");
    // Short values are quoted whole, as before.
    const [action] = lintRules(rule("action: forwrd", SUBJECT_EXISTS), "rules.yaml");
    expect(action?.message).toStartWith("unknown action 'forwrd' (did you mean 'forward'?)");
  });

  test("several errors in one file are all reported, in position order", () => {
    const text = `domains: [company.com]
rules:
  - name: one
    action: explode
    ${SUBJECT_EXISTS}
  - name: two
    action: drop
    conditions: [{ field: subject, operator: regex, value: '(' }]
`;
    expect(found(text)).toEqual([
      [4, 13, "error", "unknown-action"],
      [8, 60, "error", "invalid-regex"],
    ]);
  });
});

const CATCH_ALL = "conditions: [{ field: subject, operator: regex, value: '.*' }]";

describe("warnings", () => {
  test("rules after a catch-all are shadowed (priority order, ties by file order)", () => {
    const text = `domains: [company.com]
rules:
  - name: catch-all
    priority: 5
    action: archive
    ${CATCH_ALL}
  - name: same-priority-later
    priority: 5
    action: drop
    ${SUBJECT_EXISTS}
  - name: lower
    priority: 1
    action: drop
    ${SUBJECT_EXISTS}
  - name: higher-but-later-in-file
    priority: 9
    action: drop
    ${SUBJECT_EXISTS}
`;
    expect(found(text)).toEqual([
      [7, 5, "warning", "shadowed-rule"],
      [11, 5, "warning", "shadowed-rule"],
    ]);
    expect(lintRules(text, "f")[0]?.message).toContain("catch-all rule 'catch-all' (priority 5, line 3)");
    expect(parseRules(text, "f").ok).toBe(true);
  });

  test("match: any with one always-true condition is a catch-all; not: true is not", () => {
    const anyCatchAll = `domains: [company.com]
rules:
  - name: any-catch-all
    priority: 2
    action: archive
    match: any
    conditions:
      - { field: to, operator: equals, value: x@company.com }
      - { field: subject, operator: contains, value: "" }
  - name: after
    priority: 1
    action: drop
    ${SUBJECT_EXISTS}
`;
    expect(found(anyCatchAll)).toEqual([[10, 5, "warning", "shadowed-rule"]]);
    const negated = anyCatchAll.replace(`value: "" }`, `value: "", not: true }`);
    expect(found(negated)).toEqual([]);
    const allOfThem = anyCatchAll.replace("    match: any\n", "");
    expect(found(allOfThem)).toEqual([]);
  });

  // An IPv4 client is matched against IPv6 ranges in its mapped form, so ::/0 takes it too.
  test("client_ip in_cidr ::/0 is a catch-all, as 0.0.0.0/0 with ::/0 is; 0.0.0.0/0 alone is not", () => {
    const cidrFirst = (value: string) => `domains: [company.com]
rules:
  - name: by-address
    priority: 2
    action: archive
    conditions: [{ field: client_ip, operator: in_cidr, value: ${value} }]
  - name: after
    action: drop
    ${SUBJECT_EXISTS}
`;
    expect(found(cidrFirst('"::/0"'))).toEqual([[7, 5, "warning", "shadowed-rule"]]);
    expect(found(cidrFirst('[0.0.0.0/0, "::/0"]'))).toEqual([[7, 5, "warning", "shadowed-rule"]]);
    expect(found(cidrFirst("0.0.0.0/0"))).toEqual([]);
  });

  test("anchored or asserting regexes are not catch-alls", () => {
    for (const regex of ["'^$'", "'.*$'", "'\\bx'", "'^(?!spam)'", "'.+'"]) {
      const text = `domains: [company.com]
rules:
  - name: a
    priority: 2
    action: archive
    conditions: [{ field: subject, operator: regex, value: ${regex} }]
  - name: b
    action: drop
    ${SUBJECT_EXISTS}
`;
      expect(found(text)).toEqual([]);
    }
  });

  test("no domains", () => {
    expect(found(`rules:\n  - name: a\n    action: drop\n    ${SUBJECT_EXISTS}\n`)).toEqual([[1, 1, "warning", "no-domains"]]);
    expect(found(`domains: []\nrules:\n  - name: a\n    action: drop\n    ${SUBJECT_EXISTS}\n`)).toEqual([[1, 10, "warning", "no-domains"]]);
    expect(found(`domains:\nrules:\n  - name: a\n    action: drop\n    ${SUBJECT_EXISTS}\n`).map((d) => d[3])).toEqual(["invalid-domains"]);
  });

  test("YAML syntax errors said for an admin, where the mistake is", () => {
    const messages = (text: string) => lintRules(text, "rules.yaml").map((d) => [d.line, d.col, d.message]);
    // The library reports an unclosed quote at the end of the file; the quote is on line 3.
    expect(messages('domains: [company.com]\nrules:\n  - name: "abc\n    action: drop\n')).toEqual([[3, 11, "quoted text is never closed: add the closing quote"]]);
    expect(messages("domains: [company.com]\nrules:\n  - name: 'a''b\n    action: drop\n")).toEqual([[3, 11, "quoted text is never closed: add the closing quote"]]);
    expect(messages("domains: [company.com]\nrules: []\nrules: []\n")).toEqual([[3, 1, "duplicate key 'rules': each key may appear once in a mapping"]]);
    expect(messages("domains: [company.com]\n---\nrules: []\n")[0]?.[2]).toContain("a second YAML document starts here (---)");
    // An unquoted ' #' hides the rest of the line, '}' included: the library says so at the next line (or past the end).
    expect(messages("domains: [company.com]\nrules:\n  - name: a\n    action: drop\n    conditions:\n      - { field: subject, operator: regex, value: ^Case #\\d+ }\n")).toEqual([
      [6, 9, "'{' is not closed: ' #' starts a comment in YAML, which hid the rest of the line and its '}'; quote the value with '#' in it (value: '^Case #\\d+')"],
    ]);
    expect(messages("domains: [company.com\nrules: []\n")).toEqual([[1, 10, "'[' is never closed: add ']', or indent its continuation lines more than the line it opens on"]]);
    const colon = messages("domains: [company.com]\nrules:\n  - name: a\n    action: drop\n    conditions:\n      - field: subject\n        operator: regex\n        value: ^Re: .*견적\n");
    expect(colon).toEqual([[8, 16, "Nested mappings are not allowed in compact mappings: a value with ': ' in it is read as another key: value; put the value in quotes (value: '^Re: .*')"]]);
    const deep = messages(`domains: ${"[".repeat(50_000)}\n`);
    expect(deep.some((d) => String(d[2]).startsWith("nested too deeply to read"))).toBe(true);
    expect(new Set(deep.map((d) => String(d))).size).toBe(deep.length); // each once
  });

  test("a key indented one space too far is reported on its own line, as an indentation mistake, once", () => {
    const messages = (text: string) => lintRules(text, "rules.yaml").map((d) => [d.line, d.col, d.message]);
    const said = (key: string) => `'${key}:' is indented more than the line above it, so YAML reads it as more of that line's value: indent it as far as the keys beside it`;
    expect(messages("domains: [company.com]\nrules:\n  - name: a\n     action: drop\n    conditions: []\n")).toEqual([[4, 6, said("action")]]);
    expect(messages("domains: [company.com]\nrules:\n  - name: a\n    action: drop\n    conditions:\n      - field: subject\n         operator: contains\n        value: x\n")).toEqual([[7, 10, said("operator")]]);
    expect(messages("domains: [company.com]\r\ndefault:\r\n  action: archive\r\n   category: x\r\n")).toEqual([[4, 4, said("category")]]);
  });

  test("a quoted priority says to write it without the quotes", () => {
    const messages = lintRules(rule('priority: "10"', "action: drop", SUBJECT_EXISTS), "rules.yaml").map((d) => [d.line, d.col, d.message]);
    expect(messages).toEqual([[4, 15, "priority must be a whole number ≥ 0 (higher is evaluated first): write priority: 10 without quotes"]]);
  });

  test("`rules:` with every rule commented out, or `rules: ~`: no rules, no error (the default applies)", () => {
    expect(found("domains: [company.com]\nrules:\n#  - name: a\n#    action: drop\n")).toEqual([]);
    expect(found("domains: [company.com]\nrules: ~\n")).toEqual([]);
    expect(parseRules("domains: [company.com]\nrules:\n", "rules.yaml").ok).toBe(true);
    expect(found("domains: [company.com]\nrules: archive\n")).toEqual([[2, 8, "error", "invalid-type"]]);
  });

  test("forward targets inside domains warn (loop), loop_ok acknowledges it", () => {
    const text = `domains: [company.com, Company.org]
default: { action: forward, forward_to: triage@company.org }
rules:
  - name: sales
    action: forward
    forward_to: [sales@other.example, sales@COMPANY.com]
    ${SUBJECT_EXISTS}
`;
    expect(found(text)).toEqual([
      [2, 41, "warning", "forward-loop"],
      [6, 39, "warning", "forward-loop"],
    ]);
    expect(parseRules(text, "f").ok).toBe(true);
    const acknowledged = text
      .replace("forward_to: triage@company.org }", "forward_to: triage@company.org, loop_ok: true }")
      .replace("    action: forward\n", "    action: forward\n    loop_ok: true\n");
    expect(found(acknowledged)).toEqual([]);
  });

  test("keys that do not apply to the action, repeated domains, CIDR host bits", () => {
    const text = `domains: [company.com, company.com]
rules:
  - name: a
    action: drop
    url: https://x.example/
    conditions:
      - { field: client_ip, operator: in_cidr, value: 10.1.2.3/8 }
`;
    expect(found(text)).toEqual([
      [1, 24, "warning", "duplicate-domain"],
      [5, 5, "warning", "ignored-key"],
      [7, 55, "warning", "cidr-host-bits"],
    ]);
  });

  // client_ip is text in serve's form and equals compares text: these never matched, silently.
  test("client_ip equals an address written otherwise than serve writes it: a warning naming the form to write", () => {
    const equalsIp = (value: string) => rule("action: drop", "conditions:", `  - { field: client_ip, operator: equals, value: "${value}" }`);
    const warnings = (value: string) => lintRules(equalsIp(value), "f").map((d) => [d.code, d.message]);
    for (const [written, form] of [["0:0:0:0:0:0:0:1", "::1"], ["::ffff:192.0.2.1", "192.0.2.1"], ["::FFFF:C000:201", "192.0.2.1"], ["[2001:db8::1]", "2001:db8::1"]]) {
      expect(warnings(written ?? "")).toEqual([["client-ip-form", `client_ip is written as serve sees it, so '${written}' never matches: write ${form} (or use in_cidr)`]]);
    }
    // Serve's own forms (case does not matter to equals), and text that is no address, are left alone.
    for (const fine of ["::1", "2001:DB8::1", "192.0.2.1", "unknown"]) expect(warnings(fine)).toEqual([]);
    expect(found(rule("action: drop", "conditions:", '  - { field: client_ip, operator: equals, value: "0:0:0:0:0:0:0:1" }'))).toEqual([[6, 54, "warning", "client-ip-form"]]);
  });

  // Pasted from a word processor or chat: in YAML the curly quotes are part of the value, so
  // the rule matched only text that had them, and nothing said so.
  test("a value wrapped in typographic quotes without YAML quotes: a warning at the value, with both fixes", () => {
    const cond = (c: string) => rule("action: drop", "conditions:", `  - ${c}`);
    expect(lintRules(cond("{ field: subject, operator: contains, value: “Invoice” }"), "f").map((d) => [d.line, d.col, d.severity, d.code, d.message])).toEqual([
      [6, 54, "warning", "typographic-quotes", `value '“Invoice”' is wrapped in typographic quotes, which YAML keeps as part of the value: write it in straight quotes ("Invoice") if they were meant as quoting, or quote it whole ("“Invoice”") if they are part of it`],
    ]);
    for (const c of ["{ field: subject, operator: regex, value: ‘^urgent’ }", "{ field: from, operator: equals, value: „boss@x.example“ }", "{ field: body, operator: contains, value: «promo» }"]) {
      expect(found(cond(c))).toEqual([[6, expect.any(Number) as unknown as number, "warning", "typographic-quotes"]]);
    }
    // Quoted in YAML, the curly quotes are meant; inside a value, or on one side only, they are text.
    for (const c of [`{ field: subject, operator: contains, value: "“Invoice”" }`, "{ field: subject, operator: contains, value: say “hi” now }", "{ field: subject, operator: contains, value: “Invoice }"]) {
      expect(found(cond(c))).toEqual([]);
    }
  });

  test("50,000 domains (a hosting gateway) load without a quadratic scan", () => {
    // Serve validates on its event loop at start and on every hot reload: a quadratic duplicate
    // check took over 4 s here, stalling every SMTP session for that long.
    const domains = Array.from({ length: 50_000 }, (_, i) => `brand${i}.example`);
    const forwards = Array.from({ length: 200 }, (_, i) => `  - name: f-${i}\n    action: forward\n    forward_to: desk@brand${i}.example\n    loop_ok: true\n    conditions: [{ field: subject, operator: exists }]\n`);
    const text = `domains: [${domains.join(", ")}, brand7.example]\nrules:\n${forwards.join("")}`;
    const { value: result, ms } = withCpuMs(() => parseRules(text, "rules.yaml"));
    expect(result.ok).toBe(true);
    expect(result.diagnostics.map((d) => d.code)).toEqual(["duplicate-domain"]);
    if (result.ok) expect(result.rules.domains.length).toBe(50_000);
    expect(ms).toBeLessThan(2_000);
  });

  test("the shipped rules.yaml has no errors", async () => {
    const text = await Bun.file(new URL("../../rules.yaml", import.meta.url)).text();
    const diagnostics = lintRules(text, "rules.yaml");
    expect(diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    expect(diagnostics.map((d) => d.code)).toEqual(["forward-loop", "forward-loop"]);
    const result = parseRules(text, "rules.yaml");
    expect(result.ok && result.rules.rules.map((r) => [r.name, r.priority, r.category])).toEqual([
      ["reject-spam-subject", 1000, "spam"],
      ["route-quote-to-sales", 100, "sales"],
      ["catch-all", 1, "inbox"],
    ]);
  });
});

describe("loader", () => {
  test("version is a short sha256 of the bytes; loadedAt is what was passed", () => {
    const text = rule("action: drop", SUBJECT_EXISTS);
    const at = new Date("2024-01-02T03:04:05Z");
    const a = parseRules(text, "f", { loadedAt: at });
    const b = parseRules(`${text}\n`, "f");
    expect(a.ok && a.rules.version).toMatch(/^[0-9a-f]{12}$/);
    expect(a.ok && a.rules.loadedAt).toBe(at);
    expect(a.ok && b.ok && a.rules.version !== b.rules.version).toBe(true);
  });

  test("aliases are followed, and a billion-laughs file is refused, not expanded", () => {
    const withAlias = `domains: [company.com]
rules:
  - name: a
    action: drop
    conditions: &c [{ field: subject, operator: exists }]
  - name: b
    action: drop
    conditions: *c
`;
    expect(parseRules(withAlias, "f").ok).toBe(true);
    const levels = ["a0: &a0 [{ field: subject, operator: exists }]"];
    for (let i = 1; i < 12; i++) levels.push(`a${i}: &a${i} [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(", ")}]`);
    const bomb = `${levels.join("\n")}\n`;
    const { value: ok, ms } = withCpuMs(() => parseRules(bomb, "f").ok);
    expect(ok).toBe(false);
    expect(ms).toBeLessThan(2000);
  });
});
