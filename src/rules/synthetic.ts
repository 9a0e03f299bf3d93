/**
 * Synthetic rules files for benchmarks and load tests: N rules that use every kind of
 * condition (text comparisons, regexes, CIDRs, sizes, headers, auth results) but that a
 * normal message does not match, followed by a catch-all — the worst realistic case,
 * where every rule is evaluated for every message. Pure, deterministic.
 */

const CONDITION_TEMPLATES: readonly ((i: number) => string)[] = [
  (i) => `{ field: subject, operator: contains, value: "synthetic-${i}" }`,
  (i) => `{ field: subject, operator: regex, value: '^\\[bench-${i}\\]' }`,
  (i) => `{ field: from, operator: ends_with, value: "@bench-${i}.example" }`,
  (i) => `{ field: to, operator: equals, value: "bench-${i}@company.com" }`,
  (i) => `{ field: rcpt, operator: starts_with, value: "bench-${i}+" }`,
  (i) => `{ field: header:X-Bench, operator: equals, value: "v${i}" }`,
  (i) => `{ field: client_ip, operator: in_cidr, value: "198.18.${i % 256}.0/24" }`,
  (i) => `{ field: body, operator: contains, value: "bench marker ${i}" }`,
  (i) => `{ field: attachment, operator: ends_with, value: ".bench${i}" }`,
  (i) => `{ field: size, operator: gt, value: ${100_000_000 + i} }`,
];

/** A rules.yaml text with `count` non-matching rules plus a final catch-all. */
export function syntheticRulesYaml(count: number, domain = "company.com"): string {
  const lines = [`domains: [${domain}]`, "default: { action: archive, category: default }", "rules:"];
  for (let i = 0; i < count; i++) {
    const first = CONDITION_TEMPLATES[i % CONDITION_TEMPLATES.length];
    const second = CONDITION_TEMPLATES[(i + 3) % CONDITION_TEMPLATES.length];
    if (first === undefined || second === undefined) continue;
    lines.push(
      `  - name: bench-${i}`,
      `    priority: ${count - i + 1}`,
      `    category: bench`,
      `    action: ${i % 2 === 0 ? "archive" : "drop"}`,
      `    match: ${i % 3 === 0 ? "any" : "all"}`,
      "    conditions:",
      `      - ${first(i)}`,
      `      - ${second(i)}`,
    );
  }
  lines.push(
    "  - name: catch-all",
    "    priority: 0",
    "    action: archive",
    "    category: inbox",
    "    conditions:",
    "      - { field: subject, operator: regex, value: '.*' }",
  );
  return `${lines.join("\n")}\n`;
}
