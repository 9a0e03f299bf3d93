/**
 * Bun's own .env autoload pins the start-up values under mailgw's precedence (environment over
 * .env): serve from source warns when it ran without --no-env-file and a .env is there, and a
 * source-mode systemd unit passes the flag. (The e2e side: test/e2e/serve-reload.test.ts.)
 */
import { expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { bunCommentCuts, bunDotenvWarning, NO_ENV_FILE_FLAG } from "../../src/config/bun-dotenv.ts";
import { resolveExec } from "../../src/systemd/install.ts";

test("warns for a source run without --no-env-file when ./.env exists, else not", () => {
  const cwd = mkdtempSync(join(tmpdir(), "mailgw-bun-dotenv-"));
  expect(bunDotenvWarning("/src/main.ts", [], cwd)).toBeNull();
  writeFileSync(join(cwd, ".env"), "RELAY_SMTP_PASS=x\n");
  expect(bunDotenvWarning("/src/main.ts", [], cwd)).toContain(`${join(cwd, ".env")} into the environment itself`);
  expect(bunDotenvWarning("/src/main.ts", [NO_ENV_FILE_FLAG], cwd)).toBeNull();
  expect(bunDotenvWarning("/$bunfs/root/mailgw", [], cwd)).toBeNull();
});

test("npm scripts and a source-mode systemd unit run bun with --no-env-file", () => {
  expect(pkg.scripts.start.split(" ")).toContain(NO_ENV_FILE_FLAG);
  expect(pkg.scripts.mailgw.split(" ")).toContain(NO_ENV_FILE_FLAG);
  expect(resolveExec("/opt/bun", "/opt/mailgw/src/main.ts").exec).toEqual(["/opt/bun", NO_ENV_FILE_FLAG, "/opt/mailgw/src/main.ts"]);
  expect(resolveExec("/usr/local/bin/mailgw", "/$bunfs/root/mailgw").exec).toEqual(["/usr/local/bin/mailgw"]);
});

test("names the variables whose unquoted '#' mailgw keeps and Bun cuts (a comment to Bun anywhere), never a quoted one or a note", () => {
  expect(bunCommentCuts("A=#abc\nB='#abc'\nC=\"#abc\"\nD=ab#c\nE=ab #note\nF=   # note\nexport G=x#y\n# H=#z\nI=`a#b`\n")).toEqual(["A", "D", "G"]);
  const cwd = mkdtempSync(join(tmpdir(), "mailgw-bun-dotenv-"));
  writeFileSync(join(cwd, ".env"), "RELAY_SMTP_USER=gw\nRELAY_SMTP_PASS=#s3cret\n");
  const warning = bunDotenvWarning("/src/main.ts", [], cwd) ?? "";
  expect(warning).toContain("Bun also cut RELAY_SMTP_PASS at an unquoted '#'");
  expect(warning).not.toContain("s3cret");
});
