/**
 * A webhook URL's secrets (user and password, query, the path past its first segment: Slack's
 * and Discord's tokens) are shown nowhere but in rules.yaml (README: Webhooks): the logs, the
 * stats page and `mailgw queue list` redacted them, while `mailgw rules list` and `mailgw test`
 * (text and --json) printed the URL whole, and their output is what an admin pastes into a
 * support ticket. Through the real CLI (`bun src/main.ts`), in a mkdtemp dir; the rules file is
 * left as it was.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "../..");
const SECRETS = ["pa55word", "SECRET123", "XXXXSECRETXXXX", "B000", "8f14e45f-ceea-467f-a8f3-2c2d1e0a77aa"];

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: orders
    priority: 50
    action: webhook
    url: https://user:pa55word@erp.example/hooks/inbound?token=SECRET123
    conditions:
      - { field: to, operator: equals, value: orders@company.com }
  - name: slack
    priority: 40
    action: webhook
    url: https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX
    conditions:
      - { field: to, operator: equals, value: alerts@company.com }
  - name: site
    priority: 30
    action: webhook
    url: https://webhook.site/8f14e45f-ceea-467f-a8f3-2c2d1e0a77aa
    conditions:
      - { field: to, operator: equals, value: site@company.com }
`;

let dir = "";
let rulesFile = "";

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "facts-s12-urls-"));
  rulesFile = join(dir, "rules.yaml");
  writeFileSync(rulesFile, RULES);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function mailgw(args: string[], stdin?: string): { code: number; stdout: string; stderr: string } {
  const proc = Bun.spawnSync([process.execPath, "--no-env-file", join(ROOT, "src/main.ts"), ...args], { cwd: dir, env: { PATH: process.env.PATH ?? "" }, stdin: stdin === undefined ? "ignore" : Buffer.from(stdin) });
  return { code: proc.exitCode ?? -1, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
}

const message = (to: string) => `From: a@sender.example\r\nTo: ${to}\r\nSubject: hi\r\n\r\nbody\r\n`;

function expectNoSecret(text: string): void {
  for (const secret of SECRETS) expect(text).not.toContain(secret);
}

test("rules list shows each webhook URL as the logs do, its query marked", () => {
  const run = mailgw(["rules", "list", rulesFile]);
  expect(run.code).toBe(0);
  expectNoSecret(run.stdout + run.stderr);
  expect(run.stdout).toContain("https://erp.example/hooks/…?…");
  expect(run.stdout).toContain("https://hooks.slack.com/services/…");
  expect(run.stdout).toContain("https://webhook.site/…");
  expect(readFileSync(rulesFile, "utf8")).toBe(RULES);
});

test("mailgw test: the decision's url redacted, in text and in --json", () => {
  for (const [to, shown] of [["orders@company.com", "https://erp.example/hooks/…?…"], ["alerts@company.com", "https://hooks.slack.com/services/…"], ["site@company.com", "https://webhook.site/…"]] as const) {
    const text = mailgw(["test", "-", "--rules", rulesFile], message(to));
    expect(text.code).toBe(0);
    expectNoSecret(text.stdout + text.stderr);
    expect(text.stdout).toContain(`decision: webhook`);
    expect(text.stdout).toContain(`url=${shown}`);
    const json = mailgw(["test", "-", "--rules", rulesFile, "--json"], message(to));
    expect(json.code).toBe(0);
    expectNoSecret(json.stdout + json.stderr);
    expect((JSON.parse(json.stdout) as { decision: { action: string; url: string } }).decision).toMatchObject({ action: "webhook", url: shown });
  }
});

test("rules lint and rules add quote an invalid URL without its secrets", () => {
  const bad = join(dir, "bad.yaml");
  writeFileSync(bad, RULES.replace("https://user:pa55word@erp.example", "ftp://user:pa55word@erp.example"));
  for (const format of ["text", "json", "github"]) {
    const run = mailgw(["rules", "lint", "--format", format, bad]);
    expect(run.code).toBe(1);
    expectNoSecret(run.stdout + run.stderr);
  }
  const add = mailgw(["rules", "add", "hook2", "--action", "webhook", "--url", "https://user:pa55word@erp example/x?token=SECRET123", "--conditions", '[{"field":"subject","operator":"contains","value":"x"}]', "--file", rulesFile]);
  expect(add.code).toBe(1);
  expectNoSecret(add.stdout + add.stderr);
  expect(readFileSync(rulesFile, "utf8")).toBe(RULES);
});
