/**
 * `mailgw queue list` on a queue of many thousands, as an admin reads one after a long relay
 * outage: through `| head` (the reader goes away mid-output) and past the row limit.
 * Run as subprocesses (`bun src/main.ts queue ...`) on a seeded data dir.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { join, resolve } from "node:path";
import { LIST_LIMIT } from "../../src/queue/queue-admin.ts";
import { makeEnv, seedDelivery, type TestEnv } from "../delivery/helpers.ts";

const ROOT = resolve(import.meta.dir, "../..");

const envs: TestEnv[] = [];
afterEach(() => {
  for (const t of envs.splice(0)) t.db.close();
});

/** `n` deferred forwards: one seeded as the pipeline would, the rest copies of its rows. */
function seedMany(n: number): TestEnv {
  const t = makeEnv();
  envs.push(t);
  const first = seedDelivery(t, { state: "deferred" });
  t.db.run(
    `WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?)
     INSERT INTO deliveries (message_id, kind, target, rule, category, state, attempts, created_at, next_attempt_at, updated_at, last_error)
       SELECT d.message_id, d.kind, d.target, d.rule, d.category, 'deferred', 3, d.created_at + k.i, d.next_attempt_at + 60000, d.updated_at,
              'ESOCKET: connect ECONNREFUSED 127.0.0.1:587'
       FROM deliveries d, k WHERE d.message_id = ?`,
    [n - 1, first],
  );
  return t;
}

/** A shell pipeline, as typed: `mailgw queue list ARGS | head -n 2`. */
function listThroughHead(t: TestEnv, args: string): { code: number; stdout: string; stderr: string } {
  const mailgw = `${process.execPath} ${join(ROOT, "src/main.ts")}`;
  const r = Bun.spawnSync(["bash", "-c", `${mailgw} queue list ${args} | head -n 2; exit "\${PIPESTATUS[0]}"`], {
    cwd: t.dir,
    env: { PATH: process.env.PATH ?? "", HOME: t.dir, DATA_DIR: t.dataDir, DATABASE_URL: `file:${t.dbPath}`, NO_COLOR: "1" },
  });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

function list(t: TestEnv, ...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = Bun.spawnSync([process.execPath, join(ROOT, "src/main.ts"), "queue", "list", ...args], {
    cwd: t.dir,
    env: { PATH: process.env.PATH ?? "", HOME: t.dir, DATA_DIR: t.dataDir, DATABASE_URL: `file:${t.dbPath}`, NO_COLOR: "1" },
  });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

describe("mailgw queue list on a big queue", () => {
  test("| head: the output stops quietly when the reader goes (no EPIPE stack trace, exit 0)", () => {
    const t = seedMany(3000);
    for (const args of ["", "--json"]) {
      const r = listThroughHead(t, args);
      expect({ args, stderr: r.stderr, code: r.code }).toEqual({ args, stderr: "", code: 0 });
      expect(r.stdout.split("\n").length).toBe(3);
    }
  }, 60_000);

  test(`more than ${LIST_LIMIT}: the footer says how many there are in all, not just the rows shown`, () => {
    const total = LIST_LIMIT + 500;
    const t = seedMany(total);
    const table = list(t);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(LIST_LIMIT + 2);
    expect(lines.at(-1)).toBe(
      `${LIST_LIMIT} of ${total} deliveries shown (the oldest): narrow the list with --state, or query the deliveries table with sqlite3 for the rest`,
    );
    // --json stays an array of the rows shown; the cut is said on stderr.
    const json = list(t, "--json");
    expect(json.code).toBe(0);
    expect((JSON.parse(json.stdout) as unknown[]).length).toBe(LIST_LIMIT);
    expect(json.stderr).toContain(`${LIST_LIMIT} of ${total} deliveries shown`);
    // Under the limit: the usual count, nothing on stderr.
    t.db.run(`DELETE FROM deliveries WHERE id > 10`);
    const small = list(t, "--json");
    expect(small.stderr).toBe("");
    expect(list(t).stdout.trimEnd().split("\n").at(-1)).toBe("10 deliveries");
  }, 60_000);
});
