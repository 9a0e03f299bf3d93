/**
 * The stats endpoints of a real `mailgw serve` (the compiled executable, copied outside the
 * repository) after real mail sent with nodemailer: /stats.json counts what was sent (received,
 * by action and category, sessions, the held forward), /metrics agrees, /stats shows today's bar
 * with the count, STATS_TOKEN guards everything but /healthz, rules reloads show up live, and
 * /healthz + `mailgw healthcheck` turn unhealthy while the data dir is gone. Skipped until serve
 * is registered.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { StatsSnapshot } from "../../src/http/stats-data.ts";
import { dayKey } from "../../src/store/db.ts";
import { send } from "../helpers/metrics-gateway.ts";
import { BARE_PATH, copyBinaryToTemp, hideRepoWrapper, registeredCommands, runBinary, type CopiedBinary, freePort } from "../packaging/binary.ts";

const SERVE_REGISTERED = registeredCommands().has("serve");
/** How long the gateway may take to open its ports. */
const STARTUP_TIMEOUT_MS = 20_000;
/** Session counters are bumped when a session ends, a moment after the client's last reply. */
const SETTLE_TIMEOUT_MS = 5_000;
const TOKEN = "e2e-stats-token";
if (!SERVE_REGISTERED) console.warn("skip: `mailgw serve` is not registered in src/main.ts yet");

const RULES = `domains: [example.test]
default: { action: archive, category: default }
rules:
  - name: reject-spam
    priority: 100
    category: spam
    action: reject
    conditions:
      - { field: subject, operator: contains, value: "[SPAM]" }
  - name: to-sales
    priority: 50
    category: sales
    action: forward
    forward_to: [sales@elsewhere.example]
    conditions:
      - { field: rcpt, operator: equals, value: sales@example.test }
  - name: drop-noise
    priority: 40
    category: noise
    action: drop
    conditions:
      - { field: subject, operator: starts_with, value: "noise" }
`;

let binary: CopiedBinary;
let work: string;
beforeAll(() => {
  if (!SERVE_REGISTERED) return;
  binary = copyBinaryToTemp();
  work = mkdtempSync(join(tmpdir(), "mailgw-stats-e2e-"));
}, 60_000);
afterAll(() => {
  binary?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
}, 60_000);

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== null) return v;
    } catch (err) {
      last = err;
    }
    await Bun.sleep(100);
  }
  throw new Error(`${what} not reached in ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ""}`);
}

test.skipIf(!SERVE_REGISTERED)("counts on /stats.json, /metrics and /stats match the mail sent", async () => {
  writeFileSync(join(work, "rules.yaml"), RULES);
  const [smtpPort, httpPort] = [await freePort(), await freePort()];
  const env = { SMTP_HOST: "127.0.0.1", SMTP_PORT: String(smtpPort), HTTP_HOST: "127.0.0.1", HTTP_PORT: String(httpPort), SMTP_HOSTNAME: "mx.example.test", LOG_FORMAT: "json", STATS_TOKEN: TOKEN };
  const serve = Bun.spawn([...(hideRepoWrapper() ?? []), binary.bin, "serve"], { cwd: work, env: { PATH: BARE_PATH, HOME: work, ...env }, stdout: "pipe", stderr: "pipe" });
  const output = Promise.all([new Response(serve.stdout).text(), new Response(serve.stderr).text()]);
  const base = `http://127.0.0.1:${httpPort}`;
  const auth = { headers: { authorization: `Bearer ${TOKEN}` } };
  try {
    await waitFor("healthy", STARTUP_TIMEOUT_MS, async () => {
      if (serve.exitCode !== null) throw new Error(`serve exited with ${serve.exitCode}`);
      return (await fetch(`${base}/healthz`)).status === 200 ? true : null;
    });
    const outcomes = [
      await send(smtpPort, "user@example.test", "hello 1"),
      await send(smtpPort, "user@example.test", "hello 2"),
      await send(smtpPort, "other@example.test", "hello 3"),
      await send(smtpPort, "user@example.test", "[SPAM] buy now"),
      await send(smtpPort, "user@example.test", "[SPAM] again"),
      await send(smtpPort, "sales@example.test", "quote please"),
      await send(smtpPort, "user@example.test", "noise from a printer"),
      // Refused at RCPT (a domain not in `domains`): a session, a refusal, no message.
      await send(smtpPort, "user@elsewhere.example", "relay me"),
    ];
    expect(outcomes).toEqual(["accepted", "accepted", "accepted", "rejected", "rejected", "accepted", "accepted", "rejected"]);

    expect((await fetch(`${base}/stats.json`)).status).toBe(401);
    expect((await fetch(`${base}/metrics`)).status).toBe(401);
    const s = await waitFor("counters settled", SETTLE_TIMEOUT_MS, async () => {
      const snap = (await (await fetch(`${base}/stats.json`, auth)).json()) as StatsSnapshot;
      return snap.totals.today.sessions >= 8 && snap.queue.depth.held === 1 ? snap : null;
    });
    const today = dayKey(Date.now());
    expect(s.today).toBe(today);
    expect(s.smtp.listening).toBe(true);
    expect(s.smtp.hostname).toBe("mx.example.test");
    expect(s.totals.today.received).toBe(7);
    expect(s.totals.today.byAction).toEqual({ reject: 2, archive: 3, forward: 1, webhook: 0, drop: 1 });
    expect(s.totals.today.sessions).toBe(8);
    expect(s.totals.today.refused).toMatchObject({ relay_denied: 1, too_big: 0, rate_limited: 0 });
    expect(s.totals.today.tlsShare).toBe(0);
    expect(s.receivedPerDay.at(-1)).toEqual({ day: today, received: 7 });
    const cats = Object.fromEntries(s.categories.map((c) => [c.category, c.today]));
    expect(cats).toEqual({ default: 3, spam: 2, sales: 1, noise: 1 });
    expect(s.queue.depth.held).toBe(1);
    expect(s.relay.configured).toBe(false);
    expect(s.relay.warning).toContain("RELAY_SMTP_HOST");
    expect(s.rules.version).not.toBeNull();
    expect(s.rules.loadedAt).not.toBeNull();
    expect(s.rules.lastError).toBeNull();

    const metrics = await (await fetch(`${base}/metrics`, auth)).text();
    expect(metrics).toContain("mailgw_messages_received_total 7\n");
    expect(metrics).toContain('mailgw_messages_total{action="reject",category="spam"} 2\n');
    expect(metrics).toContain('mailgw_smtp_sessions_total{tls="false"} 8\n');
    expect(metrics).toContain('mailgw_smtp_refusals_total{reason="relay_denied"} 1\n');
    expect(metrics).toContain('mailgw_smtp_refusals_total{reason="too_big"} 0\n');
    expect(metrics).toContain('mailgw_queue_depth{state="held"} 1\n');
    expect(metrics).toContain('mailgw_rules_reload_total{result="success"} 0\n');

    const page = await (await fetch(`${base}/stats`, auth)).text();
    expect(/<g class="bar today"[^>]*>/.exec(page)?.[0]).toContain(`aria-label="Today, ${today}: 7 received"`);
    expect(page).toContain("No relay configured");
    expect(page).toMatch(/<tr data-refused="relay_denied"><td>Relaying denied[^<]*<span class="muted">\(relay_denied\)<\/span><\/td><td class="num">1<\/td><td class="num">1<\/td><\/tr>/);

    const health = (await (await fetch(`${base}/healthz`)).json()) as { status: string; warnings: string[] };
    expect(health.status).toBe("ok");
    expect(health.warnings.join(" ")).toContain("no relay configured");

    // Hot reload shows up live: a valid edit bumps the version, an invalid one is reported.
    writeFileSync(join(work, "rules.yaml"), RULES.replace("priority: 40", "priority: 45"));
    const reloaded = await waitFor("rules reloaded", SETTLE_TIMEOUT_MS, async () => {
      const snap = (await (await fetch(`${base}/stats.json`, auth)).json()) as StatsSnapshot;
      return snap.rules.reloads.ok === 1 ? snap : null;
    });
    expect(reloaded.rules.version).not.toBe(s.rules.version);
    writeFileSync(join(work, "rules.yaml"), RULES.replace("operator: contains", "operator: containz"));
    const refused = await waitFor("rules reload refused", SETTLE_TIMEOUT_MS, async () => {
      const snap = (await (await fetch(`${base}/stats.json`, auth)).json()) as StatsSnapshot;
      return snap.rules.reloads.failed === 1 ? snap : null;
    });
    expect(refused.rules.lastError).toContain("containz");
    expect(refused.rules.version).toBe(reloaded.rules.version);
    expect(await (await fetch(`${base}/stats`, auth)).text()).toContain("The last rules reload was refused");
    expect(await (await fetch(`${base}/metrics`, auth)).text()).toContain('mailgw_rules_reload_total{result="failure"} 1\n');

    // The data dir becomes unusable: /healthz says 503 and `mailgw healthcheck` exits 1; back again → healthy.
    const dataDir = join(work, "data");
    renameSync(dataDir, `${dataDir}.aside`);
    try {
      const down = await fetch(`${base}/healthz`);
      expect(down.status).toBe(503);
      expect(((await down.json()) as { reason: string }).reason).toContain("data dir is not writable");
      const check = await runBinary(binary.bin, ["healthcheck"], { cwd: work, env });
      expect(check.exitCode).toBe(1);
      // The database went with the directory, so its check fails too (it is no longer at DATABASE_URL).
      expect(check.stderr).toContain("unhealthy: database: database file is gone (ENOENT); dataDir: data dir is not writable");
    } finally {
      renameSync(`${dataDir}.aside`, dataDir);
    }
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await runBinary(binary.bin, ["healthcheck"], { cwd: work, env })).exitCode).toBe(0);
  } finally {
    serve.kill("SIGTERM");
  }
  const exitCode = await serve.exited;
  const [stdout, stderr] = await output;
  expect({ exitCode, stderr: exitCode === 0 ? "" : stderr + stdout }).toEqual({ exitCode: 0, stderr: "" });
}, 60_000);
