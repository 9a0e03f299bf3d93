/**
 * A rules reload while the process is out of file descriptors: the file is fine, so the reload
 * is postponed and tried again, not recorded as refused (which left "the last rules reload was
 * refused" on /healthz and the stats page after the shortage, until some later edit). The real
 * runtime and loader; the shortage is real: this process's open-file limit is lowered with
 * prlimit and its descriptors used up, then given back.
 */
import { afterEach, expect, test } from "bun:test";
import { closeSync, openSync, readdirSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startRulesRuntime, type RulesRuntime } from "../../src/rules-runtime/runtime.ts";
import { openDatabase } from "../../src/store/db.ts";
import { findTool } from "../packaging/binary.ts";
import { captureLogger } from "../smtp/helpers.ts";

const PRLIMIT = findTool("prlimit");
if (!PRLIMIT) console.warn("skip: prlimit not installed (apt-get install -y util-linux)");

const rulesWithDomain = (domain: string) => `domains: [${domain}]\ndefault: { action: archive, category: default }\nrules: []\n`;

let dir = "";
let runtime: RulesRuntime | null = null;
afterEach(async () => {
  runtime?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** This process's soft and hard open-file limits, as prlimit reports them. */
function nofile(): [string, string] {
  const out = Bun.spawnSync([PRLIMIT ?? "prlimit", "--pid", String(process.pid), "--nofile", "--raw", "--noheadings", "--output", "SOFT,HARD"]).stdout.toString().trim();
  const [soft = "", hard = ""] = out.split(/\s+/);
  return [soft, hard];
}

/** Runs `body` with every descriptor of this process in use (the soft limit lowered to make that quick). */
async function withoutDescriptors<T>(body: () => Promise<T>): Promise<T> {
  const [soft, hard] = nofile();
  const open = readdirSync("/proc/self/fd").length;
  expect(Bun.spawnSync([PRLIMIT ?? "prlimit", "--pid", String(process.pid), `--nofile=${open + 64}:${hard}`]).exitCode).toBe(0);
  const held: number[] = [];
  try {
    try {
      for (;;) held.push(openSync("/dev/null", "r"));
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe("EMFILE");
    }
    return await body();
  } finally {
    for (const fd of held) closeSync(fd);
    Bun.spawnSync([PRLIMIT ?? "prlimit", "--pid", String(process.pid), `--nofile=${soft}:${hard}`]);
  }
}

test.skipIf(!PRLIMIT)("a reload that cannot open the file for want of descriptors is postponed, not refused, and tried again once they are free", async () => {
  dir = await mkdtemp(join(tmpdir(), "mailgw-rules-emfile-"));
  const file = join(dir, "rules.yaml");
  await writeFile(file, rulesWithDomain("one.example"));
  const logger = captureLogger();
  runtime = await startRulesRuntime({ file, logger, db: openDatabase(join(dir, "db.sqlite")), watch: false, postponedRetryMs: 300 });
  const rt = runtime;
  await writeFile(file, rulesWithDomain("two.example"));

  const result = await withoutDescriptors(() => rt.reload());
  expect(result).toMatchObject({ ok: false, postponed: true });
  expect(result.ok ? "" : result.error).toContain("EMFILE");
  // Was: recorded as a refused reload, shown as such until the next edit.
  expect({ lastError: rt.status().lastError, refused: rt.status().reloads.error, domains: rt.domains() }).toEqual({ lastError: null, refused: 0, domains: ["one.example"] });
  expect(logger.lines.map((l) => l.msg)).toContain("rules reload postponed: the process is out of file descriptors; trying again shortly");

  const deadline = Date.now() + 5_000;
  while (rt.domains()[0] !== "two.example" && Date.now() < deadline) await Bun.sleep(50);
  expect({ domains: rt.domains(), lastError: rt.status().lastError, reloaded: rt.status().reloads.ok }).toEqual({ domains: ["two.example"], lastError: null, reloaded: 1 });
});
