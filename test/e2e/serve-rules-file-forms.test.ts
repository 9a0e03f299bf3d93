/**
 * rules.yaml as editors save it, through the real `mailgw serve` hot reload and `mailgw rules
 * lint`: both must decide alike, at the same line:col. Here: a value pasted with typographic
 * ("smart") quotes, which YAML keeps as part of the value, in a file saved with CRLF and a BOM;
 * indentation pasted with no-break spaces.
 */
import { describe, expect, test } from "bun:test";
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { BARE_PATH, REPO_ROOT } from "../packaging/binary.ts";
import { serveEachTest } from "../smtp/serve-process.ts";

const serve = serveEachTest();

async function lint(dir: string, file: string): Promise<{ code: number; stdout: string }> {
  const [bun = "bun", ...flags] = pkg.scripts.mailgw.split(" ");
  const cmd = [bun === "bun" ? process.execPath : bun, ...flags.map((a) => (a.endsWith(".ts") ? join(REPO_ROOT, a) : a)), "rules", "lint", "--format", "github", file];
  const proc = Bun.spawn(cmd, { cwd: dir, env: { PATH: BARE_PATH, HOME: dir, NO_COLOR: "1" }, stdout: "pipe", stderr: "pipe" });
  const [stdout, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  return { code, stdout };
}

const SMART = [
  "\ufeffdomains: [company.com]",
  "rules:",
  "  - name: invoices",
  "    priority: 10",
  "    action: drop",
  "    conditions:",
  "      - { field: subject, operator: contains, value: “Invoice” }",
  "",
].join("\r\n");

describe("typographic quotes around a rule value", () => {
  test("serve's reload takes the file with a warning at line:col, as lint reports it", async () => {
    const s = await serve();
    const file = join(s.dir, "rules.yaml");
    writeFileSync(`${file}.new`, SMART);
    renameSync(`${file}.new`, file);
    const warned = await s.waitForLog((l) => l.msg === "rules warning" && String(l.warning).includes("typographic quotes"));
    expect(warned.code).toBe("typographic-quotes");
    expect(String(warned.warning)).toStartWith(`${file}:7:54: value '“Invoice”' is wrapped in typographic quotes, which YAML keeps as part of the value`);
    await s.waitForLog((l) => l.msg === "rules reloaded");
    const r = await lint(s.dir, file);
    expect(r.code).toBe(0);
    expect(r.stdout).toStartWith(`::warning file=${file},line=7,col=54,title=typographic-quotes::value '“Invoice”' is wrapped`);
  });
});

describe("no-break spaces pasted as indentation", () => {
  test("serve's reload refuses the file at the line and column of the first one, as lint does", async () => {
    const s = await serve();
    const file = join(s.dir, "rules.yaml");
    const pasted = ["domains: [company.com]", "rules:", "  - name: invoices", "    priority: 10", "\u00a0\u00a0\u00a0\u00a0action: drop", "    conditions:", "      - { field: subject, operator: contains, value: Invoice }", ""].join("\n");
    writeFileSync(`${file}.new`, pasted);
    renameSync(`${file}.new`, file);
    const refused = await s.waitForLog((l) => l.msg === "rules reload refused, previous rules stay in force");
    const why = "a no-break space (U+00A0) where YAML needs a plain space (pasted from a web page or a document?): retype it as a space";
    expect(refused.error).toBe(`${file}:5:1: ${why}`);
    const r = await lint(s.dir, file);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe(`::error file=${file},line=5,col=1,title=yaml-syntax::${why}\n`);
  });

  test("inside a quoted value wrapped after one, it is text: serve's reload takes the file, lint passes it", async () => {
    const s = await serve();
    const file = join(s.dir, "rules.yaml");
    const wrapped = ["domains: [company.com]", "rules:", "  - name: factures", "    action: drop", "    conditions:", "      - field: subject", "        operator: contains", '        value: "Votre facture', '          \u00a0: disponible"', ""].join("\n");
    writeFileSync(`${file}.new`, wrapped);
    renameSync(`${file}.new`, file);
    await s.waitForLog((l) => l.msg === "rules reloaded" || l.msg === "rules reload refused, previous rules stay in force");
    expect(s.logs.some((l) => l.msg === "rules reload refused, previous rules stay in force")).toBe(false);
    const r = await lint(s.dir, file);
    expect(r).toEqual({ code: 0, stdout: "" });
  });
});
