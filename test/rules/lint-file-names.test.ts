/**
 * `mailgw rules lint` and `rules list` as a real subprocess on files whose names hold a line
 * feed and an ESC, as a glob over a pull request's files can pass them: the text output and
 * the error line keep each diagnostic on one line, so no line of the output starts with `::`
 * (a GitHub Actions workflow command) and no ESC reaches the terminal; the JSON output names
 * the file as it is.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const MAIN = new URL("../../src/main.ts", import.meta.url).pathname;
/** A name that would print a workflow command of its own on a line, and colour the terminal red. */
const NAME = "rules\n::notice title=injected::from a file name\n\x1b[31m.yaml";
const SHOWN = "rules\\u000a::notice title=injected::from a file name\\u000a\\u001b[31m.yaml";

let dir = "";

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mailgw-lint-names-"));
  await writeFile(join(dir, NAME), "rules: [\n");
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
}, 60_000);

async function rules(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = Bun.spawn([process.execPath, MAIN, "rules", ...args], { cwd: dir, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, stdout, stderr };
}

function expectOneLinePerEntry(text: string): void {
  expect(text.split("\n").filter((line) => line.startsWith("::"))).toEqual([]);
  expect(text).not.toContain("\x1b");
}

describe("file names with a line feed or an ESC", () => {
  test("lint's text output names the file escaped, on the diagnostic's own line", async () => {
    const run = await rules("lint", NAME);
    expect(run.code).toBe(1);
    expectOneLinePerEntry(run.stdout);
    expect(run.stdout.split("\n")[0]).toStartWith(`${SHOWN}:1:8: error: `);
  });

  test("lint of a missing file, and list of a broken one: the error is one line", async () => {
    const missing = await rules("lint", `${NAME}.missing`);
    expect(missing.code).toBe(2);
    expectOneLinePerEntry(missing.stdout);
    expect(missing.stdout).toStartWith(`${SHOWN}.missing:1:1: error: cannot read rules file`);
    const list = await rules("list", NAME);
    expect(list.code).toBe(1);
    expectOneLinePerEntry(list.stderr);
    // The diagnostic, then the error naming the file.
    expect(list.stderr.trimEnd().split("\n")).toEqual([expect.stringMatching(/^rules\\u000a.*:1:8: error: /), expect.stringMatching(/^mailgw: rules\\u000a.* has errors/)]);
  });

  test("lint --format json keeps the name as it is", async () => {
    const run = await rules("lint", "--format", "json", NAME);
    const parsed = JSON.parse(run.stdout) as { diagnostics: { file: string }[] };
    expect(parsed.diagnostics[0]?.file).toBe(NAME);
  });
});
