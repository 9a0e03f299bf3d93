/**
 * /metrics against the real Prometheus and promtool (Debian's `prometheus` package), set up
 * the way the README says. Two real `mailgw serve` processes: A with STATS_TOKEN, STARTTLS, a
 * relay that takes, refuses or defers forwards and a webhook receiver that answers 200, 400 or
 * 503 (so every metric family has samples); B without a token. One Prometheus scrapes every
 * second: A with the README's scrape job (token from a credentials_file), A again with a wrong
 * token (must be down with a 401), and B.
 *
 * Checked: `promtool check metrics` finds nothing; the format details Prometheus relies on
 * (content type, # HELP/# TYPE once, no duplicate series, no timestamps, +Inf bucket = _count,
 * escaped user-chosen categories); Prometheus ingests exactly what mailgw counted; rate(),
 * increase() and histogram_quantile() work; and a serve restart — after `mailgw queue drop`
 * removed an attempted delivery — shows no counter reset except the documented process-lifetime
 * mailgw_rules_reload_total.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { NAME, parseExposition, seriesKey, type Sample } from "../helpers/exposition.ts";
import { gatewayRules, ODD_CATEGORY, send, startRelay, startWebhook, type Listener } from "../helpers/metrics-gateway.ts";
import { pickPorts, prometheusSkipReason, promtoolCheckMetrics, startPrometheus, type RunningPrometheus, type Target } from "../helpers/prometheus.ts";
import { BARE_PATH, REPO_ROOT } from "../packaging/binary.ts";
import { makeCert } from "../smtp/helpers.ts";
import { serveCommand, serveDir, startServe, until, type ServeProcess } from "../smtp/serve-process.ts";

const SKIP = prometheusSkipReason();
if (SKIP) console.warn(`skip: Prometheus interop tests: ${SKIP}`);

const TOKEN = "prom-interop-token";
/** What Prometheus 2.42 sends: it prefers OpenMetrics and takes the 0.0.4 text format too. */
const PROMETHEUS_ACCEPT = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const SETTLE_MS = 15_000;

/** The README's prometheus.yml scrape job, with this test's port, token file and interval. */
function readmeScrapeJob(httpPort: number): string {
  const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  const block = /```yaml\n(# prometheus\.yml\n[\s\S]*?)```/.exec(readme)?.[1];
  if (!block) throw new Error("README.md has no ```yaml block starting with `# prometheus.yml`");
  const swaps: [string, string][] = [
    ["127.0.0.1:3000", `127.0.0.1:${httpPort}`],
    ["/etc/prometheus/mailgw.token", "{{dir}}/mailgw.token"],
    ["scrape_interval: 15s", "scrape_interval: 1s"],
  ];
  let out = block;
  for (const [from, to] of swaps) {
    if (out.split(from).length !== 2) throw new Error(`README prometheus.yml: expected \`${from}\` once:\n${block}`);
    out = out.replace(from, to);
  }
  return out;
}

function prometheusConfig(a: number, b: number): string {
  const job = (name: string, port: number, auth: string) => `  - job_name: ${name}\n${auth}    static_configs:\n      - targets: ["127.0.0.1:${port}"]\n`;
  return `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n${readmeScrapeJob(a)}${job("mailgw-wrong-token", a, "    authorization:\n      credentials: not-the-token\n")}${job("mailgw-open", b, "")}`;
}

let ports: { smtpA: number; httpA: number; smtpB: number; httpB: number; relay: number; webhook: number; prom: number };
let dirA: string;
let envA: Record<string, string>;
let serveA: ServeProcess;
let serveB: ServeProcess;
let relay: Listener;
let webhook: Listener;
let prom: RunningPrometheus;

async function metricsOf(base: string, token: string | null = TOKEN): Promise<Response> {
  return fetch(new URL("metrics", base), { headers: { accept: PROMETHEUS_ACCEPT, ...(token ? { authorization: `Bearer ${token}` } : {}) } });
}

async function samplesOf(base: string, token: string | null = TOKEN): Promise<{ samples: Sample[]; types: Map<string, string>; text: string }> {
  const text = await (await metricsOf(base, token)).text();
  return { ...parseExposition(text), text };
}

function value(samples: Sample[], key: string): number | undefined {
  return samples.find((s) => seriesKey(s.name, s.labels) === key)?.value;
}

/** Counter and histogram series (everything that must never go down), from a parsed exposition. */
function monotonic(samples: Sample[], types: Map<string, string>): Sample[] {
  return samples.filter((s) => {
    const family = types.has(s.name) ? s.name : s.name.replace(/_(bucket|sum|count)$/, "");
    return types.get(family) === "counter" || types.get(family) === "histogram";
  });
}

/** Every series of a job as Prometheus holds it now, by seriesKey. */
async function ingested(job: string, time?: number): Promise<Map<string, number>> {
  const rows = await prom.query(`{job="${job}",__name__=~"mailgw_.+"}`, time);
  return new Map(rows.map((r) => [seriesKey(r.metric.__name__ ?? "", r.metric), r.value]));
}

async function startA(): Promise<ServeProcess> {
  return startServe("source", dirA, envA);
}

/** The value of an instant query that must return exactly one series. */
async function one(expr: string, time?: number): Promise<number> {
  const rows = await prom.query(expr, time);
  if (rows.length !== 1) throw new Error(`${expr}: ${rows.length} series, expected 1: ${JSON.stringify(rows)}`);
  return rows[0]?.value ?? NaN;
}

/** Counter/histogram series where Prometheus and mailgw's own /metrics disagree, once a scrape has caught up ([] = none). */
async function differences(job: string, base: string, token: string | null): Promise<string[]> {
  let diff: string[] = [];
  await until(`Prometheus holds ${job}'s counters`, async () => {
    const own = await samplesOf(base, token);
    const held = await ingested(job);
    diff = monotonic(own.samples, own.types)
      .map((s) => [seriesKey(s.name, s.labels), s.value, held.get(seriesKey(s.name, s.labels))] as const)
      .filter(([, mine, theirs]) => mine !== theirs)
      .map(([k, mine, theirs]) => `${k}: mailgw ${mine}, Prometheus ${theirs}`);
    return diff.length === 0;
  }, SETTLE_MS).catch(() => {});
  return diff;
}

/** resets() over `window` for every counter and histogram series of serve A: the nonzero ones by seriesKey. */
async function resetsOverA(window: string, time: number): Promise<Record<string, number>> {
  const own = await samplesOf(serveA.httpUrl);
  const names = [...new Set(monotonic(own.samples, own.types).map((s) => s.name))];
  const found: Record<string, number> = {};
  for (const name of names) {
    for (const r of await prom.query(`resets(${name}{job="mailgw"}[${window}])`, time)) {
      if (r.value !== 0) found[seriesKey(name, r.metric)] = r.value;
    }
  }
  return found;
}

/** `mailgw queue ARGS` on A's data dir (as an admin runs it next to serve); its stdout. */
function queueCommand(args: string[]): string {
  const r = Bun.spawnSync([...serveCommand("source").slice(0, -1), "queue", ...args], { cwd: dirA, env: { PATH: BARE_PATH, HOME: dirA }, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`mailgw queue ${args.join(" ")}: exit ${r.exitCode}: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

describe.skipIf(SKIP !== null)("real Prometheus 2.x scraping mailgw serve", () => {
  beforeAll(async () => {
    const [smtpA = 0, httpA = 0, smtpB = 0, httpB = 0, relayPort = 0, webhookPort = 0, promPort = 0] = await pickPorts(7);
    ports = { smtpA, httpA, smtpB, httpB, relay: relayPort, webhook: webhookPort, prom: promPort };
    relay = await startRelay(ports.relay);
    webhook = startWebhook(ports.webhook);
    dirA = serveDir();
    writeFileSync(join(dirA, "rules.yaml"), gatewayRules(ports.webhook));
    const cert = makeCert(dirA);
    envA = {
      SMTP_PORT: String(ports.smtpA), HTTP_PORT: String(ports.httpA), STATS_TOKEN: TOKEN, SMTP_TLS_KEY: cert.key, SMTP_TLS_CERT: cert.cert,
      RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: String(ports.relay), RELAY_SMTP_SECURE: "none", QUEUE_RETRY_BASE_SECONDS: "3600",
    };
    serveA = await startA();
    serveB = await startServe("source", serveDir(), { SMTP_PORT: String(ports.smtpB), HTTP_PORT: String(ports.httpB) });
    prom = await startPrometheus(prometheusConfig(ports.httpA, ports.httpB), ports.prom, { "mailgw.token": `${TOKEN}\n` });
  }, 60_000);

  afterAll(async () => {
    await prom?.stop();
    for (const s of [serveA, serveB]) {
      if (s?.proc.exitCode === null) await s.stop();
      if (s) rmSync(s.dir, { recursive: true, force: true });
    }
    await relay?.close();
    await webhook?.close();
  }, 60_000);

  test("mailgw counts mail of every outcome, and promtool check metrics finds nothing to lint", async () => {
    const port = ports.smtpA;
    const outcomes = [
      await send(port, "user@example.test", "plain 1"),
      await send(port, "user@example.test", "over TLS 1", true),
      await send(port, "user@example.test", "over TLS 2", true),
      await send(port, "user@example.test", "[SPAM] one"),
      await send(port, "user@example.test", "[SPAM] two"),
      ...(await Promise.all(["ok", "perm", "temp", "hook-ok", "hook-bad", "hook-later"].map((to) => send(port, `${to}@example.test`, `to ${to}`)))),
    ];
    expect(outcomes.filter((o) => o === "rejected").length).toBe(2);
    expect(outcomes.filter((o) => o === "accepted").length).toBe(9);
    expect(await send(ports.smtpB, "user@company.com", "to B")).toBe("accepted");

    // Deliveries settle: one of each outcome per kind; sessions are counted every 2 s.
    let settled = await samplesOf(serveA.httpUrl);
    await until("deliveries and sessions counted", async () => {
      settled = await samplesOf(serveA.httpUrl);
      const v = (key: string) => value(settled.samples, key);
      return v('mailgw_queue_depth{state="deferred"}') === 2 && v('mailgw_queue_depth{state="failed"}') === 2 &&
        v('mailgw_smtp_sessions_total{tls="false"}') === 9 && v('mailgw_delivery_duration_seconds_count{kind="webhook"}') === 3;
    }, SETTLE_MS);
    const expected: Record<string, number> = {
      "mailgw_messages_received_total{}": 11,
      [seriesKey("mailgw_messages_total", { action: "reject", category: ODD_CATEGORY })]: 2,
      'mailgw_messages_total{action="archive",category="default"}': 3,
      'mailgw_messages_total{action="forward",category="sales"}': 3,
      'mailgw_messages_total{action="webhook",category="hooks"}': 3,
      'mailgw_smtp_sessions_total{tls="true"}': 2,
      'mailgw_smtp_sessions_total{tls="false"}': 9,
      ...Object.fromEntries(["forward", "webhook"].flatMap((kind) => ["delivered", "deferred", "failed"].map((result) => [`mailgw_deliveries_total{kind="${kind}",result="${result}"}`, 1]))),
      'mailgw_deliveries_by_rule_total{category="sales",kind="forward",result="failed",rule="fwd-perm"}': 1,
      'mailgw_delivery_duration_seconds_count{kind="forward"}': 3,
      'mailgw_delivery_duration_seconds_bucket{kind="forward",le="+Inf"}': 3,
      'mailgw_queue_depth{state="queued"}': 0,
      'mailgw_relay_configured{}': 1,
      'mailgw_relay_suspended_since_seconds{}': 0,
    };
    for (const [key, n] of Object.entries(expected)) expect({ key, n: value(settled.samples, key) }).toEqual({ key, n });

    const lint = promtoolCheckMetrics(settled.text);
    expect(lint).toEqual({ exitCode: 0, output: "" });
    expect(promtoolCheckMetrics(await (await metricsOf(serveB.httpUrl, null)).text())).toEqual({ exitCode: 0, output: "" });
  }, 60_000);

  test("format: 0.0.4 content type for Prometheus's Accept, HELP/TYPE once, no duplicates, no timestamps, +Inf = _count", async () => {
    const res = await metricsOf(serveA.httpUrl);
    // Prometheus asks for OpenMetrics first; mailgw answers the 0.0.4 text format it also accepts.
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const text = await res.text();
    const { samples, types } = parseExposition(text); // HELP and TYPE once each, before the samples
    const keys = samples.map((s) => seriesKey(s.name, s.labels));
    expect(keys.length).toBe(new Set(keys).size);
    for (const line of text.split("\n").filter((l) => l !== "" && !l.startsWith("#"))) {
      expect(line).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+$/); // value only: no timestamp
    }
    // A family's samples are contiguous under its own header (Prometheus warns otherwise).
    const order = text.split("\n").filter((l) => l.startsWith("# TYPE ")).map((l) => l.split(" ")[2] ?? "");
    const seen = samples.map((s) => (types.has(s.name) ? s.name : s.name.replace(/_(bucket|sum|count)$/, "")));
    expect(seen.filter((f, i) => f !== seen[i - 1])).toEqual(order.filter((f) => seen.includes(f)));
    for (const kind of ["forward", "webhook"]) {
      const inf = value(samples, seriesKey("mailgw_delivery_duration_seconds_bucket", { kind, le: "+Inf" }));
      expect(inf).toBe(value(samples, seriesKey("mailgw_delivery_duration_seconds_count", { kind })));
    }
    for (const s of samples) for (const k of Object.keys(s.labels)) expect(k).toMatch(NAME);
    // The user-chosen category comes back from the escaped label value unchanged.
    expect(text).toContain('category="spam \\"bulk\\" \\\\ 견적, {x}=y"');
    expect(samples.some((s) => s.labels.category === ODD_CATEGORY)).toBe(true);
  });

  test("Prometheus: README job up, wrong token down with 401, B up without a token; it holds what mailgw counted", async () => {
    let targets: Target[] = [];
    await until("three targets scraped", async () => {
      targets = await prom.targets();
      return targets.length === 3 && targets.every((t) => t.health !== "unknown");
    }, SETTLE_MS);
    const byJob = new Map(targets.map((t) => [t.labels.job, t]));
    expect(byJob.get("mailgw")).toMatchObject({ health: "up", lastError: "", scrapeUrl: `http://127.0.0.1:${ports.httpA}/metrics` });
    expect(byJob.get("mailgw-open")).toMatchObject({ health: "up", lastError: "" });
    expect(byJob.get("mailgw-wrong-token")?.health).toBe("down");
    expect(byJob.get("mailgw-wrong-token")?.lastError).toBe("server returned HTTP status 401 Unauthorized");

    // Every counter and histogram series, exactly as mailgw exports it (gauges like uptime move).
    expect(await differences("mailgw", serveA.httpUrl, TOKEN)).toEqual([]);
    expect(await differences("mailgw-open", serveB.httpUrl, null)).toEqual([]);
    const held = await ingested("mailgw");
    expect(held.get("mailgw_messages_received_total{}")).toBe(11);
    expect(held.get(seriesKey("mailgw_messages_total", { action: "reject", category: ODD_CATEGORY }))).toBe(2);
    expect(held.get('mailgw_smtp_sessions_total{tls="true"}')).toBe(2);
    expect(held.get('mailgw_queue_depth{state="deferred"}')).toBe(2);
    expect((await ingested("mailgw-open")).get("mailgw_messages_received_total{}")).toBe(1);

    // Prometheus took every line: as many samples as the exposition has, none dropped as duplicate.
    const own = await samplesOf(serveA.httpUrl);
    expect(await one('scrape_samples_scraped{job="mailgw"}')).toBe(own.samples.length);
    const self = await (await fetch(`${prom.url}/metrics`)).text();
    for (const counter of ["prometheus_target_scrapes_sample_duplicate_timestamp_total", "prometheus_target_scrapes_sample_out_of_order_total", "prometheus_target_scrapes_exceeded_sample_limit_total"]) {
      expect(self).toContain(`\n${counter} 0\n`);
    }
    const p90 = await one('histogram_quantile(0.9, mailgw_delivery_duration_seconds_bucket{job="mailgw",kind="forward"})');
    expect(p90).toBeGreaterThan(0);
    expect(p90).toBeLessThanOrEqual(120);
  }, 30_000);

  test("rate() and increase() follow new mail, with no counter reset while serve runs", async () => {
    const before = await ingested("mailgw");
    const t0 = Date.now() / 1000;
    await Bun.sleep(2500); // baseline samples inside the window
    for (let i = 0; i < 4; i++) expect(await send(ports.smtpA, "user@example.test", `more ${i}`)).toBe("accepted");
    for (let i = 0; i < 2; i++) expect(await send(ports.smtpA, "ok@example.test", `forward ${i}`)).toBe("accepted");
    await until("Prometheus has the new mail and deliveries", async () => {
      const now = await ingested("mailgw");
      return now.get("mailgw_messages_received_total{}") === 17 && now.get('mailgw_delivery_duration_seconds_count{kind="forward"}') === 5;
    }, SETTLE_MS);
    await Bun.sleep(1500);
    const t1 = Date.now() / 1000;
    const w = `${Math.ceil(t1 - t0) + 1}s`;
    expect((await one('mailgw_messages_received_total{job="mailgw"}', t1)) - (before.get("mailgw_messages_received_total{}") ?? 0)).toBe(6);
    // increase() extrapolates to the window's edges: at least the 6 received, at most a few scrape intervals more.
    const received = await one(`increase(mailgw_messages_received_total{job="mailgw"}[${w}])`, t1);
    expect(received).toBeGreaterThanOrEqual(6);
    expect(received).toBeLessThan(9);
    expect(await one(`rate(mailgw_messages_received_total{job="mailgw"}[${w}])`, t1)).toBeGreaterThan(0);
    expect(await one(`increase(mailgw_deliveries_total{job="mailgw",kind="forward",result="delivered"}[${w}])`, t1)).toBeGreaterThanOrEqual(2);
    const p50 = await one(`histogram_quantile(0.5, sum by (le) (rate(mailgw_delivery_duration_seconds_bucket{job="mailgw",kind="forward"}[${w}])))`, t1);
    expect(p50).toBeGreaterThan(0);
    expect(p50).toBeLessThanOrEqual(120);
    expect(await one('mailgw_queue_oldest_deferred_age_seconds{job="mailgw"}')).toBeGreaterThan(0);
    expect(await resetsOverA("10m", t1)).toEqual({});
  }, 60_000);

  test("a serve restart after `mailgw queue drop` shows no counter reset, only the process-lifetime reload counter", async () => {
    // A rules reload, counted since start: the one counter a restart sets back to 0.
    writeFileSync(join(dirA, "rules.yaml"), `${gatewayRules(ports.webhook)}# edited\n`);
    await until("reload scraped", async () => (await ingested("mailgw")).get('mailgw_rules_reload_total{result="success"}') === 1, SETTLE_MS);
    // The refused forward, with its one attempt on record, is dropped while serve runs.
    const failed = JSON.parse(queueCommand(["list", "--json", "--state", "failed"])) as { id: number; kind: string }[];
    const forward = failed.find((d) => d.kind === "forward");
    expect(forward).toBeDefined();
    queueCommand(["drop", String(forward?.id)]);
    await until("drop scraped", async () => (await ingested("mailgw")).get('mailgw_queue_depth{state="failed"}') === 1, SETTLE_MS);
    const before = await ingested("mailgw");
    const tBefore = Date.now() / 1000;

    expect(await serveA.stop()).toBe(0);
    await until("target down", async () => (await prom.targets()).find((t) => t.labels.job === "mailgw")?.health === "down", SETTLE_MS);
    serveA = await startA();
    await until("restarted serve scraped twice", async () => {
      const held = await ingested("mailgw");
      return (held.get("mailgw_uptime_seconds{}") ?? Infinity) >= 2 && (held.get("mailgw_uptime_seconds{}") ?? Infinity) < Date.now() / 1000 - tBefore;
    }, SETTLE_MS);
    const t1 = Date.now() / 1000;
    const after = await ingested("mailgw");
    const own = await samplesOf(serveA.httpUrl);
    const lower = monotonic(own.samples, own.types)
      .map((s) => seriesKey(s.name, s.labels))
      .filter((k) => !k.startsWith("mailgw_rules_reload_total") && (after.get(k) ?? -1) < (before.get(k) ?? 0))
      .map((k) => `${k}: ${before.get(k)} before the restart, ${after.get(k)} after`);
    expect(lower).toEqual([]);
    expect(await resetsOverA(`${Math.ceil(t1 - tBefore) + 5}s`, t1)).toEqual({ 'mailgw_rules_reload_total{result="success"}': 1 });
    expect(await one(`increase(mailgw_messages_received_total{job="mailgw"}[${Math.ceil(t1 - tBefore) + 2}s])`, t1)).toBe(0);
  }, 60_000);

  test("Prometheus logged no scrape warning (duplicate or out-of-order samples, bad format) all along", () => {
    // --log.level=warn: a failed scrape (wrong token, serve restarting) is debug, a malformed one is not.
    expect(prom.output().split("\n").filter((l) => /scrape|mailgw/i.test(l))).toEqual([]);
  });
});
