/**
 * Keeps the README true: the configuration table is the one generated from VARIABLES, the
 * quick-start commands are the package.json scripts CI runs, every command the CLI registers
 * is documented, every `npm run X` exists, and the rules example lints clean with the
 * compiled executable.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import pkg from "../../package.json" with { type: "json" };
import { withCurrentTable } from "../../scripts/gen-config-docs.ts";
import { MAX_RULES_FILE_BYTES } from "../../src/rules/schema.ts";
import { REPO_ROOT, copyBinaryToTemp, findTool, registeredCommands, runBinary } from "./binary.ts";
import { cleanupBinary, serveDir, startServe } from "../smtp/serve-process.ts";

const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
const codeBlocks = (lang: string): string[] =>
  [...readme.matchAll(new RegExp("```" + lang + "\\n([\\s\\S]*?)```", "g"))].map((m) => m[1] ?? "");
const temps: string[] = [];
afterAll(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true });
  cleanupBinary();
}, 60_000);
const SWAKS = findTool("swaks");

describe("README", () => {
  test("configuration table matches src/config/variables.ts (bun scripts/gen-config-docs.ts)", () => {
    expect(withCurrentTable(readme)).toBe(readme);
  });

  test("quick start: one command runs the gateway, one runs the tests, and CI runs the same", () => {
    const shell = codeBlocks("sh");
    expect(shell).toContain("npm install && npm start\n");
    expect(shell).toContain("npm install && npm test\n");
    expect(pkg.scripts.start).toBe("bun --no-env-file src/main.ts serve");
    // Four test files at a time: most of a serial run is waiting (servers starting, retries, timeouts).
    // --timeout: bun 1.4 applies neither bunfig.toml's [test] timeout nor, so, 60 s to a test
    // without its own: under four files' load a 3 s e2e test could pass bun's default 5 s.
    expect(pkg.scripts.test).toBe("bun test --parallel=4 --timeout=60000 --timings=test/timings.json");
    // The timings only order the files (slowest first); every entry must still be a test file.
    const timings = JSON.parse(readFileSync(join(REPO_ROOT, "test/timings.json"), "utf8")) as { files: Record<string, number> };
    for (const file of Object.keys(timings.files)) expect({ file, exists: existsSync(join(REPO_ROOT, file)) }).toEqual({ file, exists: true });
    expect(readFileSync(join(REPO_ROOT, ".ci/run"), "utf8")).toMatch(/^\s*npm test 2>&1/m);
  });

  test("every registered command and every SPEC §1 command is in the commands table", () => {
    const table = readme.slice(readme.indexOf("## Commands"), readme.indexOf("## Configuration"));
    const spec = ["serve", "rules", "test", "queue", "systemd", "healthcheck", "version"];
    for (const name of new Set([...registeredCommands(), ...spec])) {
      expect({ name, documented: table.includes(`| \`mailgw ${name}`) }).toEqual({ name, documented: true });
    }
  });

  test("every `npm run X` in the README is a package.json script", () => {
    const used = new Set([...readme.matchAll(/npm run (?:--silent )?([a-z:-]+)/g)].map((m) => m[1] ?? ""));
    const scripts = pkg.scripts as Record<string, string>;
    for (const name of used) expect({ name, exists: name in scripts }).toEqual({ name, exists: true });
    expect(used.size).toBeGreaterThan(2);
  });

  test("the GitHub Actions snippet is valid YAML running rules lint with --format github", () => {
    const workflow = codeBlocks("yaml").find((b) => b.includes("runs-on:"));
    const parsed = parseYaml(workflow ?? "") as { jobs?: { lint?: { steps?: { run?: string }[] } } };
    const runs = (parsed.jobs?.lint?.steps ?? []).map((s) => s.run).filter(Boolean);
    expect(runs).toContain("npm run mailgw -- rules lint --format github rules.yaml");
  });

  test.skipIf(!registeredCommands().has("rules"))("the rules example lints with 0 errors and 0 warnings (compiled executable)", async () => {
    const example = codeBlocks("yaml").find((b) => b.startsWith("domains:"));
    if (!example) throw new Error("README has no rules example starting with domains:");
    const binary = copyBinaryToTemp();
    temps.push(binary.dir);
    const work = mkdtempSync(join(tmpdir(), "mailgw-readme-"));
    temps.push(work);
    writeFileSync(join(work, "rules.yaml"), example);
    const out = await runBinary(binary.bin, ["rules", "lint", "rules.yaml"], { cwd: work });
    expect({ exitCode: out.exitCode, stdout: out.stdout }).toEqual({ exitCode: 0, stdout: "0 errors, 0 warnings in 1 file\n" });
  });

  // An admin whose generated rules file grew past the limit should find the error in the README.
  test.skipIf(!registeredCommands().has("rules"))("the rules file's size limit is in the Rules section, with the error lint prints for it (compiled executable)", async () => {
    const section = readme.slice(readme.indexOf("## Rules"), readme.indexOf("## Commands"));
    expect(MAX_RULES_FILE_BYTES).toBe(1024 * 1024);
    expect(section).toContain("at most 1 MiB");
    const binary = copyBinaryToTemp();
    temps.push(binary.dir);
    const work = mkdtempSync(join(tmpdir(), "mailgw-readme-"));
    temps.push(work);
    writeFileSync(join(work, "rules.yaml"), `# ${"x".repeat(MAX_RULES_FILE_BYTES)}\ndomains: [company.com]\nrules: []\n`);
    const out = await runBinary(binary.bin, ["rules", "lint", "rules.yaml"], { cwd: work });
    const error = /^rules\.yaml:1:1: error: (.*) \[(file-too-large)\]$/m.exec(out.stdout);
    expect({ exitCode: out.exitCode, found: error !== null }).toEqual({ exitCode: 1, found: true });
    expect(section).toContain(`\`${error?.[1]}\``);
    expect(section).toContain(`\`${error?.[2]}\``);
  });

  test.skipIf(SWAKS === null || !registeredCommands().has("serve"))(
    "quick start: each swaks command gets the reply its comment shows, with the repository's rules.yaml (compiled serve)",
    async () => {
      const start = readme.indexOf("## Quick start");
      const block = codeBlocks("sh").find((b) => b.includes("swaks --server") && readme.indexOf(b) > start) ?? "";
      const lines = block.split("\n").filter((l) => l.startsWith("swaks "));
      expect(lines.length).toBe(3);
      const dir = serveDir();
      temps.push(dir);
      writeFileSync(join(dir, "rules.yaml"), readFileSync(join(REPO_ROOT, "rules.yaml")));
      const serve = await startServe("binary", dir);
      try {
        for (const line of lines) {
          const [command = "", comment = ""] = line.split(/\s+#\s+/);
          const run = Bun.spawnSync(["sh", "-c", command.replace("127.0.0.1:2525", `127.0.0.1:${serve.smtpPort}`)], { stdout: "pipe", stderr: "pipe" });
          // swaks prints the server's replies as "<-  250 ..." (or "<** 550 ..." for an error).
          const replies = run.stdout.toString().split("\n").filter((l) => /^<(-|\*\*) /.test(l)).map((l) => l.replace(/^<(-|\*\*)\s+/, ""));
          const expected = new RegExp(`^${comment.trim().replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace("<id>", "\\S+")}$`);
          expect({ command, reply: replies.find((r) => expected.test(r)) ?? replies }).toEqual({ command, reply: expect.stringMatching(expected) });
        }
      } finally {
        await serve.stop();
      }
    },
    30_000,
  );
});
