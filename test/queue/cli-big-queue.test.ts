/**
 * `mailgw queue list` on a queue of many thousands, as an admin reads one after a long relay
 * outage: through `| head` (the reader goes away mid-output).
 * Run as subprocesses (`bun src/main.ts queue ...`) on a seeded data dir.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { join, resolve } from "node:path";
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

describe("mailgw queue list on a big queue", () => {
  test("| head: the output stops quietly when the reader goes (no EPIPE stack trace, exit 0)", () => {
    const t = seedMany(3000);
    for (const args of ["", "--json"]) {
      const r = listThroughHead(t, args);
      expect({ args, stderr: r.stderr, code: r.code }).toEqual({ args, stderr: "", code: 0 });
      expect(r.stdout.split("\n").length).toBe(3);
    }
  }, 60_000);
});
