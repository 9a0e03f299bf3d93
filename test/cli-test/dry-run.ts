/**
 * `mailgw test FILE --rules RULES --json` as an admin runs it (a subprocess from source), for
 * suites that check which rule a message reaches: a temp dir with the suite's rules file, made
 * before its tests and removed after them.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "../..");

export interface DryRunJson {
  decision: { rule?: string | null; action: string };
  facts: { attachments: string[]; attachmentTypes: string[]; to: string[]; cc: string[]; rcpt: string[] };
  refusedRecipients: { address: string }[];
}

/** `run(name, raw)`: writes `raw` to `name`.eml and returns what `mailgw test` prints (exit 0, nothing on stderr, checked). */
export function dryRunner(prefix: string, rules: string): (name: string, raw: string) => Promise<DryRunJson> {
  let dir = "";
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), prefix));
    writeFileSync(join(dir, "rules.yaml"), rules);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return async (name, raw) => {
    const file = join(dir, `${name}.eml`);
    writeFileSync(file, raw);
    const child = Bun.spawn([process.execPath, join(ROOT, "src/main.ts"), "test", file, "--rules", join(dir, "rules.yaml"), "--json"], {
      cwd: dir,
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: process.env.PATH ?? "", HOME: dir },
    });
    const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    return JSON.parse(stdout) as DryRunJson;
  };
}
