/**
 * `mailgw systemd install` (the compiled executable) when a file it writes cannot be created:
 * the error names the file and the reason, in one line, instead of the failed clean-up of the
 * temporary file (Bun's "EFAULT: bad address in system call argument, rm '….tmp-<pid>'").
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { copyBinaryToTemp, runBinary, type CopiedBinary } from "./binary.ts";

let binary: CopiedBinary;
const roots: string[] = [];

beforeAll(() => {
  binary = copyBinaryToTemp();
}, 60_000);
afterAll(() => {
  binary.cleanup();
  for (const r of roots) rmSync(r, { recursive: true, force: true });
}, 60_000);

function newRoot(): string {
  const root = mkdtempSync(join(tmpdir(), "mailgw-root-write-"));
  roots.push(root);
  return root;
}

const install = (root: string) => runBinary(binary.bin, ["systemd", "install", "--root", root, "--exec-path", "/usr/local/bin/mailgw"], { cwd: binary.dir });

test("/etc/mailgw is a file: exit 1, one line naming the env file and why mkdir failed", async () => {
  const root = newRoot();
  mkdirSync(join(root, "etc"));
  writeFileSync(join(root, "etc/mailgw"), "not a directory\n");
  const run = await install(root);
  expect(run.exitCode).toBe(1);
  const lines = run.stderr.trim().split("\n");
  expect(lines).toEqual([expect.stringContaining(`cannot write ${join(root, "etc/mailgw/mailgw.env")}: `)]);
  expect(lines[0]).toMatch(/(EEXIST|ENOTDIR).*etc\/mailgw/);
  expect(lines[0]).not.toMatch(/EFAULT|\.tmp-\d+/);
});

test("--root is a file: exit 1, one line naming the unit and ENOTDIR", async () => {
  const root = join(newRoot(), "a-file");
  writeFileSync(root, "");
  const run = await install(root);
  expect(run.exitCode).toBe(1);
  expect(run.stderr.trim().split("\n")).toEqual([expect.stringMatching(/cannot write .*\/etc\/systemd\/system\/mailgw\.service: .*ENOTDIR/)]);
  expect(run.stderr).not.toMatch(/EFAULT|\.tmp-\d+/);
});
