/**
 * `mailgw queue list --state` given only separators (`--state ,`, a script's empty list joined
 * with commas): it named no state, and the command printed "queue is empty" over a queue that
 * held deliveries. It is refused like any other --state that names no delivery state.
 */
import { expect, test } from "bun:test";
import { join, resolve } from "node:path";
import { makeEnv, seedDelivery, type TestEnv } from "../delivery/helpers.ts";

const ROOT = resolve(import.meta.dir, "../..");

function list(t: TestEnv, ...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = Bun.spawnSync([process.execPath, "--no-env-file", join(ROOT, "src/main.ts"), "queue", "list", ...args], {
    cwd: t.dir,
    env: { PATH: process.env.PATH ?? "", HOME: t.dir, DATA_DIR: t.dataDir, DATABASE_URL: `file:${t.dbPath}`, NO_COLOR: "1" },
  });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

test("--state with separators only is refused, not answered with 'queue is empty'", () => {
  const t = makeEnv();
  const id = seedDelivery(t, { target: ["sales@company.com"], state: "failed" });
  for (const value of [",", " , ,"]) {
    const r = list(t, "--state", value);
    expect(r.stdout).not.toContain("queue is empty");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("--state");
  }
  // A trailing comma still works, and no --state still lists everything pending.
  expect(list(t, "--state", "failed,").stdout).toContain(id);
  expect(list(t).stdout).toContain(id);
}, 30_000);
