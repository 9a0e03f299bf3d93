/**
 * A webhook url in rules.yaml that does not lint (a wrong scheme, a space in the host) while it
 * carries secrets (a login, a token in the path or the query): refused at start and at a reload,
 * with the rule's line and what is wrong, but the secrets in no line serve writes. README
 * (Webhooks): only rules.yaml has the whole URL; the log shows it without login, query and path
 * past the first segment.
 */
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runServeOnce, serveDir, startServe } from "../smtp/serve-process.ts";

const SECRETS = ["hookpa55", "T0KENabc123", "qs5ecret"];
const BAD_RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: hook
    action: webhook
    url: "https://user:hookpa55@hooks example/services/T0KENabc123?token=qs5ecret"
    conditions: [{ field: subject, operator: exists }]
  - name: hook2
    action: webhook
    url: "ftp://user:hookpa55@hooks.example/services/T0KENabc123?token=qs5ecret"
    conditions: [{ field: subject, operator: exists }]
`;

function expectNoSecret(text: string): void {
  for (const s of SECRETS) expect(text).not.toContain(s);
}

test("at start: exit 1 naming the rule's line and the bad url, without its login, path token or query", async () => {
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), BAD_RULES);
  const r = await runServeOnce("source", dir, {});
  expect(r.exitCode).toBe(1);
  expect(r.stderr).toContain("invalid url 'https://…@hooks example/services/…'");
  expect(r.stderr).toContain("invalid url 'ftp://hooks.example/services/…'");
  expectNoSecret(r.stderr + r.stdout);
}, 30_000);

test("at a reload: refused in the log, without the url's secrets", async () => {
  const dir = serveDir();
  const serve = await startServe("source", dir);
  try {
    writeFileSync(join(dir, "rules.yaml"), BAD_RULES);
    serve.proc.kill("SIGHUP");
    const refused = await serve.waitForLog((l) => String(l.msg).startsWith("rules reload refused"));
    expect(String(refused.error)).toContain("invalid url 'https://…@hooks example/services/…'");
    expectNoSecret(JSON.stringify(serve.logs));
  } finally {
    expect(await serve.stop()).toBe(0);
    expectNoSecret(JSON.stringify(serve.logs) + serve.stderr());
  }
}, 30_000);
