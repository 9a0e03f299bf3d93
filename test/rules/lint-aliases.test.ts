/**
 * YAML aliases in rules files are followed within a budget (yaml-context.ts): what they repeat is
 * counted, so a small file of aliases cannot make lint or serve's reload validate millions of nodes.
 */
import { expect, test } from "bun:test";
import { lintRules } from "../../src/rules/load.ts";
import { withCpuMs } from "../helpers/cpu-time.ts";

test("aliases repeating a big anchored rule are counted by what they repeat: refused once past a file's worth, quickly, said once", () => {
  const regex = "(foo|bar|baz)[a-z]{2,5}\\d+".repeat(10);
  const conditions = Array.from({ length: 256 }, (_, i) => `      { field: subject, operator: regex, value: '${regex}${i}' }`).join(",\n");
  const text = `domains: [company.com]\nrules:\n  - &r\n    name: a\n    action: drop\n    conditions: [\n${conditions}\n    ]\n${"  - *r\n".repeat(3000)}`;
  const { value: diagnostics, ms } = withCpuMs(() => lintRules(text, "rules.yaml"));
  const budget = diagnostics.filter((d) => d.code === "too-many-aliases");
  expect(budget).toHaveLength(1);
  expect(budget[0]?.message).toBe("aliases repeat more than 1,048,576 bytes of the file in all; write the rules out instead");
  expect(diagnostics.filter((d) => d.code === "invalid-type")).toEqual([]);
  expect(ms).toBeLessThan(2000);
}, 60_000);
