/**
 * Log lines whose size grows with the rules file, in the compiled `mailgw serve`: a big
 * `domains` list or hundreds of lint warnings must not turn into megabyte lines (journald splits
 * a line at 48 KB) or hundreds of lines at every save of the file.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { cleanupBinary, serveDir, startServe } from "../smtp/serve-process.ts";

afterAll(() => cleanupBinary(), 60_000);

/** A catch-all rule, then `shadowed` rules it leaves no message to (lint: shadowed-rule each). */
function shadowingRules(shadowed: number, header = ""): string {
  const lines = [header, "domains: [company.com]", "default: { action: archive }", "rules:"];
  lines.push("  - name: catch-all", "    priority: 1000", "    action: archive", "    conditions: [{ field: client_ip, operator: in_cidr, value: ['0.0.0.0/0', '::/0'] }]");
  for (let i = 0; i < shadowed; i++) lines.push(`  - name: r${i}`, "    action: drop", "    conditions: [{ field: subject, operator: contains, value: x }]");
  return `${lines.join("\n")}\n`;
}

describe("serve's log stays readable with a big rules file", () => {
  test("50,000 domains: the start line names the first ones and counts them all, and stays short", async () => {
    const dir = serveDir();
    const domains = Array.from({ length: 50_000 }, (_, i) => `d${i}.example`);
    writeFileSync(join(dir, "rules.yaml"), `domains: [${domains.join(", ")}]\ndefault: { action: archive }\nrules: []\n`);
    const serve = await startServe("binary", dir);
    try {
      const started = serve.logs.find((l) => l.msg === "mailgw serve started") as Record<string, unknown>;
      expect(JSON.stringify(started).length).toBeLessThan(2000);
      expect((started.domains as string[]).slice(0, 2)).toEqual(["d0.example", "d1.example"]);
      expect(started.domains_total).toBe(50_000);
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  }, 30_000);

  test("300 shadowed rules: a few warning lines and a count at start; a reload repeats none of them, and names a new one", async () => {
    const dir = serveDir();
    const file = join(dir, "rules.yaml");
    writeFileSync(file, shadowingRules(300));
    const serve = await startServe("binary", dir);
    const warnings = () => serve.logs.filter((l) => l.msg === "rules warning");
    try {
      expect(warnings()).toHaveLength(5);
      expect(serve.logs.find((l) => String(l.msg).startsWith("more rules warnings"))).toMatchObject({ not_logged: 295, warnings: 300, hint: `mailgw rules lint ${file} lists them all` });
      // A comment added on top moves every rule, and the catch-all's line every message names.
      writeFileSync(file, shadowingRules(300, "# reviewed"));
      await serve.waitForLog((l) => l.msg === "rules reloaded");
      expect(serve.logs.find((l) => l.msg === "rules reloaded")?.warnings).toBe(300);
      writeFileSync(file, shadowingRules(301, "# reviewed"));
      await serve.waitForLog((l) => l.msg === "rules reloaded" && l.warnings === 301);
      // The line after "rules reloaded" (it may come in the next chunk of output).
      await serve.waitForLog((l) => l.msg === "rules warning" && String(l.warning).includes("rule 'r300' can never match"));
      expect(warnings()).toHaveLength(6);
      expect(serve.logs.filter((l) => String(l.msg).startsWith("more rules warnings"))).toHaveLength(1);
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  }, 30_000);

  test("a refused reload quoting a 200,000-character rule name: a short error line, pointing to rules lint", async () => {
    const dir = serveDir();
    const file = join(dir, "rules.yaml");
    const serve = await startServe("binary", dir);
    try {
      const rule = (name: string) => [`  - name: ${name}`, "    action: drop", "    conditions: [{ field: subject, operator: contains, value: x }]"];
      const long = "a".repeat(200_000);
      writeFileSync(file, ["domains: [company.com]", "rules:", ...rule(long), ...rule(long), ...rule("BAD"), ...rule("ALSO-BAD")].join("\n") + "\n");
      const refused = await serve.waitForLog((l) => l.msg === "rules reload refused, previous rules stay in force");
      expect(JSON.stringify(refused).length).toBeLessThan(2000);
      expect(String(refused.error)).toStartWith(`${file}:3:11: rule name 'aaaa`);
      expect(String(refused.error)).toEndWith(`; and 2 more error(s) (mailgw rules lint ${file} lists them in full)`);
      const stats = (await (await fetch(`${serve.httpUrl}stats.json`)).json()) as { rules: { lastError: string } };
      expect(stats.rules.lastError).toBe(String(refused.error));
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  }, 30_000);

  test("a message whose slow regex leaves 2,000 rules unevaluated: the warning names the first 20 and counts them all", async () => {
    const dir = serveDir();
    const lines = ["domains: [company.com]", "default: { action: archive }", "rules:"];
    lines.push("  - name: slow", "    priority: 1000", "    action: reject", "    conditions: [{ field: subject, operator: regex, value: '(a+)+$' }]");
    for (let i = 0; i < 2000; i++) lines.push(`  - name: regex-rule-with-a-longer-name-${i}`, "    action: drop", `    conditions: [{ field: subject, operator: regex, value: 'zz${i}' }]`);
    writeFileSync(join(dir, "rules.yaml"), `${lines.join("\n")}\n`);
    const serve = await startServe("binary", dir);
    try {
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      expect(await sendMail(c, "b@company.com", simpleMessage(`${"a".repeat(40)}!`))).toStartWith("250 2.0.0 Queued as ");
      c.end();
      const warned = await serve.waitForLog((l) => String(l.msg).startsWith("rule regexes used up"));
      expect(JSON.stringify(warned).length).toBeLessThan(2000);
      expect((warned.rules as string[])[0]).toBe("regex-rule-with-a-longer-name-0");
      expect(warned.rules).toHaveLength(20);
      expect(warned.rules_total).toBe(2000);
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  }, 30_000);

  test("a short domains list is named whole, without a count", async () => {
    const serve = await startServe("binary", serveDir());
    try {
      const started = serve.logs.find((l) => l.msg === "mailgw serve started") as Record<string, unknown>;
      expect(started.domains).toEqual(["company.com"]);
      expect(started.domains_total).toBeUndefined();
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  }, 30_000);
});
