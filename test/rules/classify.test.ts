/**
 * classify: every operator on every field kind, multi-valued fields, not, match any,
 * priority ties, the default decision, decisions' targets and the trace.
 */
import { describe, expect, test } from "bun:test";
import { classify } from "../../src/rules/classify.ts";
import { parseRules } from "../../src/rules/load.ts";
import { syntheticRulesYaml } from "../../src/rules/synthetic.ts";
import type { RuleSet } from "../../src/rules/types.ts";
import type { MessageFacts } from "../../src/types.ts";
import { type FactsInput, makeFacts } from "../helpers/facts.ts";
import { withCpuMs } from "../helpers/cpu-time.ts";

function compile(text: string): RuleSet {
  const result = parseRules(text, "test.yaml", { loadedAt: new Date(0) });
  if (!result.ok) throw new Error(result.diagnostics.map((d) => `${d.line}:${d.col} ${d.message}`).join("\n"));
  return result.rules;
}

/** A rule set with one rule `r` (action drop) holding the given condition(s). */
function oneRule(conditions: string[], extra = ""): RuleSet {
  const lines = ["domains: [company.com]", "rules:", "  - name: r", "    action: drop", ...(extra ? [`    ${extra}`] : []), "    conditions:"];
  for (const c of conditions) lines.push(`      - ${c}`);
  return compile(`${lines.join("\n")}\n`);
}

function matches(condition: string, input: FactsInput): boolean {
  return classify(makeFacts(input), oneRule([condition])).decision.rule === "r";
}

type Case = [condition: string, facts: FactsInput, expected: boolean];

const TEXT_FIELDS: [string, keyof MessageFacts][] = [
  ["subject", "subject"],
  ["from", "from"],
  ["from_name", "fromName"],
  ["mail_from", "mailFrom"],
  ["body", "body"],
  ["helo", "helo"],
];

describe("single-valued text fields", () => {
  for (const [field, key] of TEXT_FIELDS) {
    const set = (value: string): FactsInput => ({ [key]: value }) as FactsInput;
    const cases: Case[] = [
      [`{ field: ${field}, operator: equals, value: "hello world" }`, set("Hello World"), true],
      [`{ field: ${field}, operator: equals, value: hello }`, set("Hello World"), false],
      [`{ field: ${field}, operator: contains, value: "LO WO" }`, set("Hello World"), true],
      [`{ field: ${field}, operator: contains, value: xyz }`, set("Hello World"), false],
      [`{ field: ${field}, operator: starts_with, value: HELLO }`, set("Hello World"), true],
      [`{ field: ${field}, operator: starts_with, value: world }`, set("Hello World"), false],
      [`{ field: ${field}, operator: ends_with, value: WORLD }`, set("Hello World"), true],
      [`{ field: ${field}, operator: ends_with, value: hello }`, set("Hello World"), false],
      [`{ field: ${field}, operator: regex, value: '^hello\\s' }`, set("Hello World"), true],
      [`{ field: ${field}, operator: regex, value: '^hello', flags: "" }`, set("Hello World"), false],
      [`{ field: ${field}, operator: regex, value: '^Hello', flags: "" }`, set("Hello World"), true],
      [`{ field: ${field}, operator: regex, value: '^\\d+$' }`, set("Hello World"), false],
      [`{ field: ${field}, operator: exists }`, set("x"), true],
      [`{ field: ${field}, operator: exists }`, set(""), false],
      [`{ field: ${field}, operator: exists, not: true }`, set(""), true],
      [`{ field: ${field}, operator: contains, value: hello, not: true }`, set("Hello World"), false],
      [`{ field: ${field}, operator: contains, value: bye, not: true }`, set("Hello World"), true],
    ];
    test.each(cases)(`${field}: %s`, (condition, input, expected) => {
      expect(matches(condition, input)).toBe(expected);
    });
  }

  test("mail_from equals empty string matches the null sender", () => {
    expect(matches(`{ field: mail_from, operator: equals, value: "" }`, { mailFrom: "" })).toBe(true);
    expect(matches(`{ field: mail_from, operator: equals, value: "" }`, { mailFrom: "a@b.c" })).toBe(false);
  });

  test("Unicode text is compared case-insensitively", () => {
    expect(matches(`{ field: subject, operator: contains, value: 견적 }`, { subject: "[요청] 견적서 송부" })).toBe(true);
    expect(matches(`{ field: subject, operator: equals, value: "ÉTÉ" }`, { subject: "été" })).toBe(true);
  });

  test("numbers and booleans in value are compared as written", () => {
    expect(matches(`{ field: subject, operator: contains, value: 010 }`, { subject: "order 010" })).toBe(true);
    expect(matches(`{ field: subject, operator: equals, value: true }`, { subject: "TRUE" })).toBe(true);
  });
});

const LIST_FIELDS: [string, (values: string[]) => FactsInput][] = [
  ["to", (v) => ({ to: v })],
  ["cc", (v) => ({ cc: v })],
  ["rcpt", (v) => ({ rcpt: v })],
  ["attachment", (v) => ({ attachments: v })],
  ["attachment_type", (v) => ({ attachmentTypes: v })],
  ["header:X-Test", (v) => ({ headers: { "x-test": v } })],
];

describe("multi-valued fields match when any value matches", () => {
  for (const [field, set] of LIST_FIELDS) {
    const two = set(["first@x.org", "Second@Y.org"]);
    const cases: Case[] = [
      [`{ field: ${field}, operator: equals, value: second@y.org }`, two, true],
      [`{ field: ${field}, operator: equals, value: third@y.org }`, two, false],
      [`{ field: ${field}, operator: contains, value: "@X." }`, two, true],
      [`{ field: ${field}, operator: starts_with, value: SECOND }`, two, true],
      [`{ field: ${field}, operator: starts_with, value: x.org }`, two, false],
      [`{ field: ${field}, operator: ends_with, value: "y.org" }`, two, true],
      [`{ field: ${field}, operator: regex, value: '^first@' }`, two, true],
      [`{ field: ${field}, operator: regex, value: '^second@', flags: "" }`, two, false],
      [`{ field: ${field}, operator: exists }`, two, true],
      [`{ field: ${field}, operator: exists }`, set([]), false],
      [`{ field: ${field}, operator: equals, value: first@x.org }`, set([]), false],
      [`{ field: ${field}, operator: equals, value: first@x.org, not: true }`, two, false],
      [`{ field: ${field}, operator: equals, value: other@x.org, not: true }`, two, true],
    ];
    test.each(cases)(`${field}: %s`, (condition, input, expected) => {
      expect(matches(condition, input)).toBe(expected);
    });
  }

  test("an IDN in an address rule is also tried in the ASCII form the facts hold; a UTF-8 local part stays as written", () => {
    const idn = { rcpt: ["jörg@xn--bcher-kva.example"], mailFrom: "info@xn--bcher-kva.example" };
    for (const field of ["rcpt", "mail_from"]) {
      expect(matches(`{ field: ${field}, operator: ends_with, value: "@BÜCHER.example" }`, idn)).toBe(true);
      expect(matches(`{ field: ${field}, operator: contains, value: "bücher" }`, idn)).toBe(true);
      expect(matches(`{ field: ${field}, operator: ends_with, value: "@bücher.example", not: true }`, idn)).toBe(false);
    }
    expect(matches(`{ field: rcpt, operator: equals, value: "jörg@bücher.example" }`, idn)).toBe(true);
    expect(matches(`{ field: rcpt, operator: starts_with, value: "jörg" }`, idn)).toBe(true);
    expect(matches(`{ field: subject, operator: contains, value: "bücher" }`, { subject: "xn--bcher-kva" })).toBe(false);
  });

  test("header names are case-insensitive and absent headers do not exist", () => {
    const facts = { headers: { "X-Spam-Flag": "YES" } };
    expect(matches(`{ field: header:x-spam-flag, operator: equals, value: yes }`, facts)).toBe(true);
    expect(matches(`{ field: header:X-SPAM-FLAG, operator: exists }`, facts)).toBe(true);
    expect(matches(`{ field: header:X-Other, operator: exists }`, facts)).toBe(false);
    expect(matches(`{ field: header:X-Other, operator: exists, not: true }`, facts)).toBe(true);
    expect(matches(`{ field: header:X-Empty, operator: exists }`, { headers: { "x-empty": "" } })).toBe(true);
  });
});

describe("client_ip", () => {
  const cases: Case[] = [
    [`{ field: client_ip, operator: in_cidr, value: 192.0.2.0/24 }`, { clientIp: "192.0.2.77" }, true],
    [`{ field: client_ip, operator: in_cidr, value: 192.0.2.0/24 }`, { clientIp: "192.0.3.1" }, false],
    [`{ field: client_ip, operator: in_cidr, value: 192.0.2.7 }`, { clientIp: "192.0.2.7" }, true],
    [`{ field: client_ip, operator: in_cidr, value: [10.0.0.0/8, 2001:db8::/32] }`, { clientIp: "2001:db8:1::5" }, true],
    [`{ field: client_ip, operator: in_cidr, value: [10.0.0.0/8, 2001:db8::/32] }`, { clientIp: "2001:db9::5" }, false],
    [`{ field: client_ip, operator: in_cidr, value: 192.0.2.0/24 }`, { clientIp: "::ffff:192.0.2.9" }, true],
    [`{ field: client_ip, operator: in_cidr, value: 192.0.2.0/24 }`, { clientIp: "::ffff:c000:209" }, true],
    [`{ field: client_ip, operator: in_cidr, value: "::ffff:0:0/96" }`, { clientIp: "198.51.100.1" }, true],
    [`{ field: client_ip, operator: in_cidr, value: 0.0.0.0/0 }`, { clientIp: "2001:db8::1" }, false],
    [`{ field: client_ip, operator: in_cidr, value: 0.0.0.0/0 }`, { clientIp: "not an ip" }, false],
    [`{ field: client_ip, operator: in_cidr, value: 0.0.0.0/0 }`, { clientIp: "" }, false],
    [`{ field: client_ip, operator: in_cidr, value: 10.0.0.0/8, not: true }`, { clientIp: "192.0.2.1" }, true],
    [`{ field: client_ip, operator: equals, value: 192.0.2.1 }`, { clientIp: "192.0.2.1" }, true],
    [`{ field: client_ip, operator: starts_with, value: "192.0." }`, { clientIp: "192.0.2.1" }, true],
    [`{ field: client_ip, operator: regex, value: '^2001:' }`, { clientIp: "2001:db8::1" }, true],
    [`{ field: client_ip, operator: exists }`, { clientIp: "" }, false],
  ];
  test.each(cases)("%s with %o", (condition, input, expected) => {
    expect(matches(condition, input)).toBe(expected);
  });
});

describe("size, tls and authentication results", () => {
  const cases: Case[] = [
    [`{ field: size, operator: gt, value: 1000 }`, { size: 1001 }, true],
    [`{ field: size, operator: gt, value: 1000 }`, { size: 1000 }, false],
    [`{ field: size, operator: lt, value: 1000 }`, { size: 999 }, true],
    [`{ field: size, operator: lt, value: 1000 }`, { size: 1000 }, false],
    [`{ field: size, operator: equals, value: 1000 }`, { size: 1000 }, true],
    [`{ field: size, operator: gt, value: 1KB }`, { size: 1025 }, true],
    // 1 KB is 1,024 bytes, as MAX_MESSAGE_SIZE_MB's MB is 1,048,576.
    [`{ field: size, operator: gt, value: 1KB }`, { size: 1024 }, false],
    [`{ field: size, operator: gt, value: 1k }`, { size: 1001 }, false],
    [`{ field: size, operator: lt, value: 2MB }`, { size: 2 * 1024 * 1024 - 1 }, true],
    [`{ field: size, operator: gt, value: "10 MB" }`, { size: 10 * 1024 * 1024 }, false],
    [`{ field: size, operator: lt, value: 1000, not: true }`, { size: 5000 }, true],
    [`{ field: tls, operator: equals, value: true }`, { tls: true }, true],
    [`{ field: tls, operator: equals, value: true }`, { tls: false }, false],
    [`{ field: tls, operator: equals, value: false }`, { tls: false }, true],
    [`{ field: tls, operator: equals, value: true, not: true }`, { tls: false }, true],
    [`{ field: spf, operator: equals, value: fail }`, { spf: "fail" }, true],
    [`{ field: spf, operator: equals, value: FAIL }`, { spf: "softfail" }, false],
    [`{ field: dkim, operator: equals, value: pass }`, { dkim: "pass" }, true],
    [`{ field: dmarc, operator: equals, value: pass, not: true }`, { dmarc: "fail" }, true],
  ];
  test.each(cases)("%s with %o", (condition, input, expected) => {
    expect(matches(condition, input)).toBe(expected);
  });
});

describe("rules", () => {
  test("match: all needs every condition, match: any one of them", () => {
    const conditions = [`{ field: subject, operator: contains, value: invoice }`, `{ field: from, operator: ends_with, value: "@acme.example" }`];
    const all = oneRule(conditions);
    const any = oneRule(conditions, "match: any");
    const onlySubject = makeFacts({ subject: "Invoice 42", from: "x@other.example" });
    const both = makeFacts({ subject: "Invoice 42", from: "billing@acme.example" });
    const neither = makeFacts({ subject: "hi", from: "x@other.example" });
    expect(classify(onlySubject, all).decision.rule).toBeNull();
    expect(classify(both, all).decision.rule).toBe("r");
    expect(classify(onlySubject, any).decision.rule).toBe("r");
    expect(classify(neither, any).decision.rule).toBeNull();
  });

  const PRIORITIES = `domains: [company.com]
rules:
  - name: low-first-in-file
    priority: 5
    action: archive
    conditions: [{ field: subject, operator: contains, value: a }]
  - name: tie-one
    priority: 10
    action: drop
    conditions: [{ field: subject, operator: contains, value: a }]
  - name: tie-two
    priority: 10
    action: archive
    conditions: [{ field: subject, operator: contains, value: a }]
  - name: high-last-in-file
    priority: 20
    action: archive
    conditions: [{ field: subject, operator: contains, value: zzz }]
`;

  test("higher priority first, ties in file order, first match wins", () => {
    const rules = compile(PRIORITIES);
    expect(rules.rules.map((r) => r.name)).toEqual(["high-last-in-file", "tie-one", "tie-two", "low-first-in-file"]);
    expect(classify(makeFacts({ subject: "a" }), rules).decision.rule).toBe("tie-one");
    expect(classify(makeFacts({ subject: "a zzz" }), rules).decision.rule).toBe("high-last-in-file");
  });

  test("no match → the default decision (archive/default unless configured)", () => {
    const implicit = classify(makeFacts({ subject: "nothing" }), oneRule([`{ field: subject, operator: equals, value: x }`]));
    expect(implicit.decision).toEqual({ rule: null, category: "default", action: "archive", forwardTo: [], url: null, rejectMessage: null, archive: true });
    const custom = compile(`domains: [company.com]
default: { action: forward, category: unsorted, forward_to: [triage@elsewhere.example], archive: true }
`);
    expect(classify(makeFacts(), custom).decision).toEqual({
      rule: null,
      category: "unsorted",
      action: "forward",
      forwardTo: ["triage@elsewhere.example"],
      url: null,
      rejectMessage: null,
      archive: true,
    });
  });

  test("decisions carry targets, reject message, archive flag and category (default: rule name)", () => {
    const rules = compile(`domains: [company.com]
rules:
  - name: spam
    priority: 3
    category: junk
    action: reject
    reject_message: "No thanks"
    conditions: [{ field: subject, operator: contains, value: spam }]
  - name: hook
    priority: 2
    action: webhook
    url: https://erp.example/inbound
    archive: true
    conditions: [{ field: to, operator: equals, value: orders@company.com }]
  - name: fwd
    priority: 1
    action: forward
    forward_to: [a@other.example, B@Other.Example]
    conditions: [{ field: subject, operator: contains, value: fwd }]
`);
    expect(classify(makeFacts({ subject: "spam" }), rules).decision).toEqual({
      rule: "spam",
      category: "junk",
      action: "reject",
      forwardTo: [],
      url: null,
      rejectMessage: "No thanks",
      archive: false,
    });
    const hook = classify(makeFacts({ to: ["orders@company.com"] }), rules).decision;
    expect(hook).toMatchObject({ rule: "hook", category: "hook", action: "webhook", url: "https://erp.example/inbound", archive: true });
    const fwd = classify(makeFacts({ subject: "fwd" }), rules).decision;
    expect(fwd).toMatchObject({ action: "forward", forwardTo: ["a@other.example", "B@other.example"], archive: false });
    expect(Object.isFrozen(fwd)).toBe(true);
  });
});

describe("trace", () => {
  const rules = compile(`domains: [company.com]
rules:
  - name: first
    priority: 3
    action: drop
    conditions:
      - { field: subject, operator: contains, value: nope }
      - { field: header:X-Missing, operator: exists, not: true }
  - name: second
    priority: 2
    action: archive
    conditions:
      - { field: body, operator: contains, value: marker }
      - { field: rcpt, operator: ends_with, value: "@company.com" }
  - name: third
    priority: 1
    action: archive
    conditions: [{ field: size, operator: gt, value: 0 }]
`);

  test("lists the rules evaluated up to the match, with every condition's actual value", () => {
    const body = `marker ${"x".repeat(1000)}`;
    const rcpt = Array.from({ length: 30 }, (_, i) => `user${i}@company.com`);
    const { decision, trace } = classify(makeFacts({ subject: "Hello", body, rcpt, size: 10 }), rules);
    expect(decision.rule).toBe("second");
    expect(trace.map((t) => [t.rule, t.priority, t.matched])).toEqual([
      ["first", 3, false],
      ["second", 2, true],
    ]);
    expect(trace[0]?.conditions).toEqual([
      { field: "subject", operator: "contains", not: false, expected: "nope", actual: "Hello", matched: false },
      { field: "header:x-missing", operator: "exists", not: true, expected: "", actual: null, matched: true },
    ]);
    const [bodyTrace, rcptTrace] = trace[1]?.conditions ?? [];
    expect(bodyTrace?.matched).toBe(true);
    expect(typeof bodyTrace?.actual === "string" && bodyTrace.actual.length).toBe(201);
    expect(Array.isArray(rcptTrace?.actual) && rcptTrace.actual.length).toBe(21);
    expect(Array.isArray(rcptTrace?.actual) && rcptTrace.actual[20]).toBe("… 10 more");
  });

  test("regex expected values show source and flags; trace: false gives the same decision", () => {
    const set = oneRule([`{ field: subject, operator: regex, value: '^\\[SPAM\\]' }`]);
    const facts = makeFacts({ subject: "[spam] win" });
    const traced = classify(facts, set);
    expect(traced.trace[0]?.conditions[0]?.expected).toBe("/^\\[SPAM\\]/i");
    const fast = classify(facts, set, { trace: false });
    expect(fast.decision).toBe(traced.decision);
    expect(fast.trace).toEqual([]);
  });

  test("no match traces every rule and returns the default", () => {
    const { decision, trace } = classify(makeFacts({ size: 0 }), rules);
    expect(decision.rule).toBeNull();
    expect(trace.map((t) => t.rule)).toEqual(["first", "second", "third"]);
  });
});

describe("synthetic rule sets (bench helper)", () => {
  test("200 generated rules compile, none matches an ordinary message, the catch-all does", () => {
    const rules = compile(syntheticRulesYaml(200));
    expect(rules.rules).toHaveLength(201);
    const facts = makeFacts({ subject: "Quarterly report", from: "a@b.example", to: ["x@company.com"], rcpt: ["x@company.com"], clientIp: "192.0.2.1", body: "hello ".repeat(2000), size: 12_000 });
    const { decision, trace } = classify(facts, rules);
    expect(decision.rule).toBe("catch-all");
    expect(trace).toHaveLength(201);
    const { ms } = withCpuMs(() => {
      for (let i = 0; i < 1000; i++) classify(facts, rules, { trace: false });
    });
    const perMessageMs = ms / 1000;
    // Generous bound for a shared 2-core machine; bench/parse-classify.ts measures for real.
    expect(perMessageMs).toBeLessThan(5);
  });
});
