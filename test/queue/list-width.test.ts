/**
 * `mailgw queue list` aligns its columns in terminal columns: a forward to an EAI address
 * (用户@例子.example, a CJK character two columns wide) pushed LAST ERROR two columns right per
 * such character when the padding counted UTF-16 units.
 */
import { expect, test } from "bun:test";
import { formatList, type ListedEntry } from "../../src/queue/queue-admin.ts";

const entry = (target: string, lastError: string): ListedEntry => ({
  id: "01m88zwrh1y738rd5qvskrv12c", delivery: 1, kind: "forward", state: "failed", target,
  ageSeconds: 3, attempts: 1, nextAttemptAt: null, lastError, rule: "r", category: "c",
});

test("LAST ERROR starts in the same terminal column on every line", () => {
  const text = formatList([entry("用户@xn--fsqu00a.example,josé@example.org", "553 5.6.7 no SMTPUTF8"), entry("sales@example.org", "550 5.1.1 no such user")], 0);
  const lines = text.split("\n").slice(0, 3);
  const columns = lines.map((line) => {
    const at = line.search(/LAST ERROR|553 |550 /);
    return Bun.stringWidth(line.slice(0, at));
  });
  const first = columns[0] ?? 0;
  expect(first).toBeGreaterThan(0);
  expect(columns).toEqual([first, first, first]);
});
