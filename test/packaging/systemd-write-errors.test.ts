/**
 * `mailgw systemd install` (the compiled executable) when a file it writes cannot be created:
 * the error names the file and the reason, in one line, instead of the failed clean-up of the
 * temporary file (Bun's "EFAULT: bad address in system call argument, rm '….tmp-<pid>'").
 */
import { expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runBinary } from "./binary.ts";
import { systemdTestRoots } from "./systemd-roots.ts";

const setup = systemdTestRoots("mailgw-root-write-");
const newRoot = (): string => setup.newRoot();

const install = (root: string) => runBinary(setup.binary.bin, ["systemd", "install", "--root", root, "--exec-path", "/usr/local/bin/mailgw"], { cwd: setup.binary.dir });

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
