/**
 * `mailgw test` without --to / --from takes the envelope from the header To / From. With a NUL
 * inside an address (`To: payroll@company.com<NUL>.evil.example`), the header facts read it two
 * ways (parse/header-facts.ts): as written, NUL kept, and as the text before the NUL. The dry
 * run took both as envelope addresses: the one with the NUL drew "serve would refuse at RCPT
 * <payroll@company.com\u0000.evil.example>", and a From with a NUL became a mail_from serve can
 * never see (it refuses a NUL in MAIL FROM), so a mail_from rule decided otherwise than in serve.
 * Now the dry run takes the reading a client can send (before the NUL), says that the envelope
 * is a guess from the header, and decides as serve does for the envelope a C-string sender
 * (`sendmail -t`) gives. Both through the real CLI and the real `mailgw serve` (from source).
 */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RawClient, greet, terminated } from "../smtp/helpers.ts";
import { serveEachTest } from "../smtp/serve-process.ts";

const ROOT = join(import.meta.dir, "../..");

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: evil-sender, priority: 90, action: reject, reject_message: "evil sender", conditions: [{ field: mail_from, operator: ends_with, value: .evil.example }] }
  - { name: ceo, priority: 80, action: reject, reject_message: "ceo sender", conditions: [{ field: mail_from, operator: equals, value: ceo@company.com }] }
  - { name: payroll, priority: 70, action: reject, reject_message: "payroll rcpt", conditions: [{ field: rcpt, operator: equals, value: payroll@company.com }] }
`;

const NUL_TO = "From: a@partner.example\r\nTo: payroll@company.com\0.evil.example\r\nSubject: s\r\n\r\nhello\r\n";
const NUL_FROM = "From: CEO <ceo@company.com\0.evil.example>\r\nTo: sales@company.com\r\nSubject: s\r\n\r\nhello\r\n";

interface DryRun {
  decision: { rule: string | null };
  facts: { mailFrom: string; rcpt: string[] };
  refusedRecipients: unknown[];
  refusedSender: string | null;
  envelopeSource: { mailFrom: string; rcpt: string; nulCut: boolean };
}

function dryRun(raw: string, json: boolean): { code: number; stdout: string; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), "facts-s12-nul-"));
  try {
    writeFileSync(join(dir, "rules.yaml"), RULES);
    writeFileSync(join(dir, "m.eml"), raw);
    const proc = Bun.spawnSync([process.execPath, "--no-env-file", join(ROOT, "src/main.ts"), "test", "m.eml", "--rules", "rules.yaml", ...(json ? ["--json"] : [])], { cwd: dir, env: { PATH: process.env.PATH ?? "", HOME: dir } });
    return { code: proc.exitCode ?? -1, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const dryRunJson = (raw: string): DryRun => {
  const run = dryRun(raw, true);
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
  return JSON.parse(run.stdout) as DryRun;
};

test("mailgw test: a To address with a NUL is a recipient as its text before the NUL, with no 'serve would refuse' note", () => {
  const json = dryRunJson(NUL_TO);
  expect(json.facts.rcpt).toEqual(["payroll@company.com"]);
  expect(json.refusedRecipients).toEqual([]);
  expect(json.envelopeSource).toEqual({ mailFrom: "header", rcpt: "header", nulCut: true });
  expect(json.decision.rule).toBe("payroll");
  const text = dryRun(NUL_TO, false).stdout;
  expect(text).not.toContain("serve would refuse");
  expect(text).toContain("mail_from and rcpt taken from the header From/To (no --from, no --to): serve classifies with the envelope the client sends");
  expect(text).toContain("a header address with a NUL is taken as its text before the NUL");
});

test("mailgw test: a From address with a NUL is the envelope sender as its text before the NUL", () => {
  const json = dryRunJson(NUL_FROM);
  expect(json.facts.mailFrom).toBe("ceo@company.com");
  expect(json.refusedSender).toBeNull();
  expect(json.decision.rule).toBe("ceo");
});

const serve = serveEachTest();

test("serve: the NUL readings are refused at MAIL / RCPT, the readings before the NUL decide as the dry run did", async () => {
  const s = await serve({}, RULES);
  const c = await RawClient.connect(s.smtpPort);
  await greet(c);
  expect(await c.cmd("MAIL FROM:<a@partner.example>")).toStartWith("250");
  expect(await c.cmd("RCPT TO:<payroll@company.com\0.evil.example>")).toBe("501 5.1.3 Error: Bad recipient address syntax");
  expect(await c.cmd("RCPT TO:<payroll@company.com>")).toStartWith("250");
  expect(await c.cmd("DATA")).toStartWith("354");
  c.write(terminated(NUL_TO));
  expect(await c.reply()).toBe(`550 5.7.1 payroll rcpt`);
  expect(await c.cmd("MAIL FROM:<ceo@company.com\0.evil.example>")).toBe("501 5.1.7 Error: Bad sender address syntax");
  expect(await c.cmd("MAIL FROM:<ceo@company.com>")).toStartWith("250");
  expect(await c.cmd("RCPT TO:<sales@company.com>")).toStartWith("250");
  expect(await c.cmd("DATA")).toStartWith("354");
  c.write(terminated(NUL_FROM));
  expect(await c.reply()).toBe(`550 5.7.1 ceo sender`);
  expect(await c.cmd("QUIT")).toStartWith("221");
  expect(await s.stop()).toBe(0);
}, 60_000);
