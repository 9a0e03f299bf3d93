/**
 * Hot reload of rules.yaml: a real file in a mkdtemp directory, the real watcher (inotify)
 * and loader. Replacing the file by `mv` and rewriting it in place both take effect, as do a
 * ConfigMap-style `..data` swap and an edit of a symlink's target; an invalid version is
 * refused and the previous rules stay in force.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CliError } from "../../src/errors.ts";
import { openDatabase } from "../../src/store/db.ts";
import { silentLogger, type Logger } from "../../src/log/logger.ts";
import { captureLogger } from "../smtp/helpers.ts";
import { startRulesRuntime, type RulesRuntime } from "../../src/rules-runtime/runtime.ts";

const rulesWithDomain = (domain: string) => `domains: [${domain}]\ndefault: { action: archive, category: default }\nrules: []\n`;

let dir = "";
let runtime: RulesRuntime | null = null;
afterEach(async () => {
  runtime?.close();
  runtime = null;
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function start(opts: { watch?: boolean; logger?: Logger } = {}) {
  dir = await mkdtemp(join(tmpdir(), "mailgw-rules-"));
  const file = join(dir, "rules.yaml");
  await writeFile(file, rulesWithDomain("one.example"));
  const db = openDatabase(join(dir, "db.sqlite"));
  runtime = await startRulesRuntime({ file, logger: opts.logger ?? silentLogger, db, debounceMs: 50, watch: opts.watch ?? true });
  return { file, db, rt: runtime };
}

describe("rules hot reload", () => {
  test("a file replaced with mv takes effect; an invalid one is refused and the old rules stay", async () => {
    const { file, db, rt } = await start();
    expect(rt.domains()).toEqual(["one.example"]);
    const v1 = rt.status().version;

    await writeFile(join(dir, "rules.yaml.new"), rulesWithDomain("two.example"));
    await rename(join(dir, "rules.yaml.new"), file);
    await until(() => rt.domains()[0] === "two.example", "mv-replaced rules");
    expect(rt.status().version).not.toBe(v1);
    expect(rt.status().reloads.ok).toBeGreaterThanOrEqual(1);

    await writeFile(file, "domains: [three.example]\nrules:\n  - name: BAD NAME\n    action: explode\n");
    await until(() => rt.status().lastError !== null, "refused reload");
    expect(rt.domains()).toEqual(["two.example"]);
    expect(rt.status().lastError).toContain(file);
    expect(rt.status().reloads.error).toBeGreaterThanOrEqual(1);
    const meta = new Map(db.query<{ key: string; value: string }, []>("SELECT key, value FROM meta").all().map((r) => [r.key, r.value]));
    expect(meta.get("rules.version")).toBe(rt.status().version);
    expect(meta.get("rules.last_error")).toContain("rules.yaml");
    expect(Number(meta.get("rules.reloads_error"))).toBeGreaterThanOrEqual(1);

    await writeFile(file, rulesWithDomain("four.example"));
    await until(() => rt.domains()[0] === "four.example", "in-place rewrite");
    expect(rt.status().lastError).toBeNull();
    db.close();
  });

  test("a symlinked rules file is watched: Kubernetes ConfigMap `..data` swap, and an edit of the link's target", async () => {
    dir = await mkdtemp(join(tmpdir(), "mailgw-rules-"));
    const cfg = join(dir, "cfg");
    await mkdir(join(cfg, "..v1"), { recursive: true });
    await writeFile(join(cfg, "..v1", "rules.yaml"), rulesWithDomain("one.example"));
    await symlink("..v1", join(cfg, "..data"));
    const file = join(cfg, "rules.yaml");
    await symlink("..data/rules.yaml", file);
    runtime = await startRulesRuntime({ file, logger: silentLogger, debounceMs: 50 });
    const rt = runtime;
    // What kubelet's atomic writer does: new directory, new `..data_tmp` link renamed over `..data`.
    await mkdir(join(cfg, "..v2"));
    await writeFile(join(cfg, "..v2", "rules.yaml"), rulesWithDomain("two.example"));
    await symlink("..v2", join(cfg, "..data_tmp"));
    await rename(join(cfg, "..data_tmp"), join(cfg, "..data"));
    await until(() => rt.domains()[0] === "two.example", "ConfigMap swap seen");
    runtime.close();

    // `ln -s /srv/config/rules.yaml /etc/mailgw/rules.yaml`: the target is edited where it lives.
    const etc = join(dir, "etc");
    await mkdir(etc);
    const link = join(etc, "rules.yaml");
    await symlink(join(cfg, "..v2", "rules.yaml"), link);
    runtime = await startRulesRuntime({ file: link, logger: silentLogger, debounceMs: 50 });
    const rt2 = runtime;
    await writeFile(join(cfg, "..v2", "rules.yaml.new"), rulesWithDomain("three.example"));
    await rename(join(cfg, "..v2", "rules.yaml.new"), join(cfg, "..v2", "rules.yaml"));
    await until(() => rt2.domains()[0] === "three.example", "edit of the link target seen");
  });

  test("reload() (what SIGHUP calls) swaps without a watcher; a vanished file keeps the old rules", async () => {
    const { file, db, rt } = await start({ watch: false });
    await writeFile(file, rulesWithDomain("five.example"));
    expect(rt.domains()).toEqual(["one.example"]);
    const ok = await rt.reload();
    expect(ok).toMatchObject({ ok: true, changed: true });
    expect(rt.domains()).toEqual(["five.example"]);
    expect(await rt.reload()).toMatchObject({ ok: true, changed: false });
    await rm(file);
    const refused = await rt.reload();
    expect(refused.ok).toBe(false);
    expect(rt.domains()).toEqual(["five.example"]);
    db.close();
  });

  // A half-written file, or domains: forgotten: every RCPT would get 550, a permanent bounce.
  test("a reload that lists no domains is refused while the rules in force have some; lint warnings are logged", async () => {
    const logs = captureLogger();
    const { file, db, rt } = await start({ watch: false, logger: logs });
    await writeFile(file, "default: { action: archive }\n");
    const refused = await rt.reload();
    expect(refused).toMatchObject({ ok: false });
    expect(!refused.ok && refused.error).toContain("the new rules list no domains");
    expect(rt.domains()).toEqual(["one.example"]);
    // A catch-all shadowing a later rule: reloaded, and its lint warning is in the log.
    const shadowed = `domains: [two.example]\nrules:\n  - name: all\n    priority: 10\n    action: archive\n    conditions: [{ field: subject, operator: regex, value: ".*" }]\n  - name: never\n    priority: 1\n    action: drop\n    conditions: [{ field: subject, operator: contains, value: x }]\n`;
    await writeFile(file, shadowed);
    expect(await rt.reload()).toMatchObject({ ok: true, changed: true });
    const warning = logs.lines.find((l) => l.level === "warn" && l.msg === "rules warning");
    expect(String(warning?.fields.warning)).toContain("can never match");
    db.close();
  });

  test("after a refused reload, the same rules valid again are said to be so (the log's last word was an error)", async () => {
    const logs = captureLogger();
    const { file, db, rt } = await start({ watch: false, logger: logs });
    await writeFile(file, "domains: [one.example\n");
    expect((await rt.reload()).ok).toBe(false);
    await writeFile(file, rulesWithDomain("one.example"));
    expect(await rt.reload()).toMatchObject({ ok: true, changed: false });
    expect(logs.lines.map((l) => l.msg)).toContain("rules file valid again; the rules in force are unchanged");
    expect(await rt.reload()).toMatchObject({ ok: true, changed: false });
    expect(logs.lines.filter((l) => l.msg.startsWith("rules file valid again"))).toHaveLength(1);
    db.close();
  });

  test("a missing or invalid rules file at start is a CliError naming the file", async () => {
    dir = await mkdtemp(join(tmpdir(), "mailgw-rules-"));
    const missing = join(dir, "nope.yaml");
    const e1 = await startRulesRuntime({ file: missing, logger: silentLogger }).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(CliError);
    expect((e1 as CliError).message).toContain(missing);
    expect((e1 as CliError).exitCode).toBe(1);
    const bad = join(dir, "bad.yaml");
    await writeFile(bad, "rules: [1, 2\n");
    const e2 = await startRulesRuntime({ file: bad, logger: silentLogger }).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(CliError);
    expect((e2 as CliError).message).toContain(bad);
  });
  test("an invalid edit followed by SIGHUP (a watched reload, then a direct one) is refused once in the log and the counters", async () => {
    const log = captureLogger();
    const { file, rt } = await start({ logger: log });
    await writeFile(file, "domains: [three.example]\nrules:\n  - name: BAD NAME\n    action: explode\n");
    await until(() => rt.status().lastError !== null, "refused reload");
    const again = await rt.reload();
    expect(again.ok).toBe(false);
    const refusals = () => log.lines.filter((l) => l.msg.startsWith("rules reload refused"));
    expect(refusals()).toHaveLength(1);
    expect(rt.status().reloads.error).toBe(1);

    // A different error is news, and so is the same one once the file was fixed in between.
    await writeFile(file, "domains: [three.example]\nrules:\n  - name: x\n    action: explode\n");
    expect((await rt.reload()).ok).toBe(false);
    expect(refusals()).toHaveLength(2);
    expect(rt.status().reloads.error).toBe(2);
    expect(rt.domains()).toEqual(["one.example"]);
  });
});
