/**
 * Log lines whose size grows with the rules file, in the compiled `mailgw serve`: a big
 * `domains` list or hundreds of lint warnings must not turn into megabyte lines (journald splits
 * a line at 48 KB) or hundreds of lines at every save of the file.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { cleanupBinary, serveDir, startServe } from "../smtp/serve-process.ts";

afterAll(() => cleanupBinary());

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
