/**
 * The real compiled `serve` with its wall clock stepped while it runs, as NTP steps a clock that
 * was ahead (or an RTC kept in local time is corrected at boot): libfaketime (Debian package
 * `faketime`) reads the offset from a file on every call; the monotonic clock is left alone,
 * as a real step leaves it. Skipped, with the reason, where libfaketime is not installed.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { relayVars, startRelay, waitFor, type ScriptedRelay } from "../delivery/helpers.ts";
import { greet, RawClient, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { cleanupBinary, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";
import { fakeClock, LIBFAKETIME } from "../helpers/fake-clock.ts";
import { recordPosts } from "../helpers/post-recorder.ts";


let serve: ServeProcess | null = null;
let relay: ScriptedRelay | null = null;
afterEach(async () => {
  await serve?.stop();
  serve = null;
  await relay?.close();
  relay = null;
  cleanupBinary();
}, 60_000);

const FORWARD_RULES = `domains: [company.com]
rules:
  - { name: fwd, priority: 1, action: forward, forward_to: [sales@forward.example], conditions: [{ field: subject, operator: contains, value: fwd }] }
`;

/** A session up to MAIL FROM (where the rate limit is checked); its reply. */
async function mailFrom(port: number): Promise<string> {
  const c = await RawClient.connect(port);
  try {
    await greet(c);
    const reply = await c.cmd("MAIL FROM:<alice@sender.example>");
    await c.cmd("QUIT").catch(() => "");
    return reply;
  } finally {
    c.end();
  }
}

describe.skipIf(!LIBFAKETIME)("serve with a wall clock stepped back", () => {
  test("a client at its rate limit is let in again once the window is over, not when the clock has caught up", async () => {
    const dir = serveDir();
    const { clock, env } = fakeClock(dir);
    serve = await startServe("binary", dir, {
      ...env,
      RATE_LIMIT_MAX: "2",
      RATE_LIMIT_WINDOW_MS: "1500",
    });
    const port = serve.smtpPort;
    expect(await mailFrom(port)).toStartWith("250");
    expect(await mailFrom(port)).toStartWith("250");
    expect(await mailFrom(port)).toStartWith("451 4.7.1");
    // NTP steps the clock back an hour; the window (1.5 s of real time) then ends.
    writeFileSync(clock, "-1h\n");
    await Bun.sleep(1700);
    expect(await mailFrom(port)).toStartWith("250");
  }, 60_000);
});

describe.skipIf(!LIBFAKETIME)("serve with a wall clock stepped back", () => {
  test("a relay suspended just before the step is probed when its suspension ends, not a day later when the clock has caught up", async () => {
    const dir = serveDir();
    writeFileSync(join(dir, "rules.yaml"), FORWARD_RULES);
    const { clock, env } = fakeClock(dir);
    relay = await startRelay();
    relay.password = "changed at the provider"; // 535: the relay fails itself and is suspended
    serve = await startServe("binary", dir, { ...env, ...relayVars(relay), QUEUE_RETRY_BASE_SECONDS: "1" });
    const c = await RawClient.connect(serve.smtpPort);
    await greet(c);
    expect(await sendMail(c, "orders@company.com", simpleMessage("fwd 1"))).toStartWith("250 2.0.0");
    c.end();
    await serve.waitForLog((l) => l.msg === "relay suspended: forwards wait, one is tried when the suspension ends");
    // NTP steps the clock back a day; the password is fixed. The suspension lasts a second or two.
    writeFileSync(clock, "-1d\n");
    relay.password = "relaypass";
    const fixed = relay;
    await waitFor(() => fixed.received.length === 1, 15_000, "the forward at the relay");
  }, 60_000);
});

describe.skipIf(!LIBFAKETIME)("serve with a wall clock stepped back", () => {
  test("a webhook URL paused by a 2 s Retry-After just before the step is posted to within seconds, not a day later when the clock has caught up", async () => {
    const dir = serveDir();
    const receiver = recordPosts((n) => (n === 1 ? new Response("slow down", { status: 429, headers: { "retry-after": "2" } }) : new Response("ok")));
    const posts = receiver.posts;
    try {
      writeFileSync(join(dir, "rules.yaml"), `domains: [company.com]
rules:
  - { name: hook, priority: 1, action: webhook, url: "http://127.0.0.1:${receiver.port}/hook", conditions: [{ field: subject, operator: contains, value: hook }] }
`);
      const { clock, env } = fakeClock(dir);
      serve = await startServe("binary", dir, { ...env, QUEUE_RETRY_BASE_SECONDS: "1" });
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      expect(await sendMail(c, "orders@company.com", simpleMessage("hook 1"))).toStartWith("250 2.0.0");
      c.end();
      await waitFor(() => posts.length === 1, 15_000, "the first post (429)");
      // NTP steps the clock back a day: the receiver's 2 s must not become a day and 2 s.
      writeFileSync(clock, "-1d\n");
      await waitFor(() => posts.length === 2, 15_000, "the second post");
    } finally {
      await receiver.stop();
    }
  }, 60_000);
});

/** Uptime as /stats.json, /healthz and /metrics give it. */
async function uptimes(url: string): Promise<number[]> {
  const stats = (await (await fetch(`${url}/stats.json`)).json()) as { uptimeSeconds: number };
  const health = (await (await fetch(`${url}/healthz`)).json()) as { uptimeSeconds: number };
  const metric = /^mailgw_uptime_seconds (\S+)$/m.exec(await (await fetch(`${url}/metrics`)).text())?.[1];
  return [stats.uptimeSeconds, health.uptimeSeconds, Number(metric)];
}

describe.skipIf(!LIBFAKETIME)("serve with a wall clock stepped either way", () => {
  test("uptime counts the time serve has run: not 0 for an hour after a step back, not a day more after a step forward", async () => {
    const dir = serveDir();
    const { clock, env } = fakeClock(dir);
    serve = await startServe("binary", dir, env);
    await Bun.sleep(1100);
    // An alert on `mailgw_uptime_seconds < 300` (a restart) fired for an hour after this step.
    writeFileSync(clock, "-1h\n");
    for (const u of await uptimes(serve.httpUrl)) expect(u).toBeWithin(1, 60);
    writeFileSync(clock, "+1d\n");
    for (const u of await uptimes(serve.httpUrl)) expect(u).toBeWithin(1, 60);
  }, 60_000);
});

describe.skipIf(!LIBFAKETIME)("serve with a wall clock stepped during a session", () => {
  test("the session line's duration_ms is the time the session took, not the step", async () => {
    const dir = serveDir();
    const { clock, env } = fakeClock(dir);
    serve = await startServe("binary", dir, env);
    const c = await RawClient.connect(serve.smtpPort);
    await greet(c);
    writeFileSync(clock, "+1d\n");
    expect(await sendMail(c, "info@company.com", simpleMessage("across a step"))).toStartWith("250 2.0.0");
    await c.cmd("QUIT").catch(() => "");
    c.end();
    const line = await serve.waitForLog((l) => l.msg === "smtp session" && l.decision === "archive");
    expect(line.duration_ms as number).toBeLessThan(60_000);
  }, 60_000);
});

describe.skipIf(!LIBFAKETIME)("serve with a wall clock stepped during a delivery", () => {
  test("the attempt's duration (log, histogram) is the time it took, not the step", async () => {
    const dir = serveDir();
    writeFileSync(join(dir, "rules.yaml"), FORWARD_RULES);
    const { clock, env } = fakeClock(dir);
    relay = await startRelay();
    relay.dataReplyDelayMs = 1500;
    serve = await startServe("binary", dir, { ...env, ...relayVars(relay) });
    const c = await RawClient.connect(serve.smtpPort);
    await greet(c);
    expect(await sendMail(c, "orders@company.com", simpleMessage("fwd across a step"))).toStartWith("250 2.0.0");
    c.end();
    const sending = relay;
    await waitFor(() => sending.mailFroms.length === 1, 10_000, "the attempt under way");
    writeFileSync(clock, "+1d\n"); // while the relay takes its time over DATA
    const line = await serve.waitForLog((l) => l.msg === "delivered");
    expect(line.duration_ms as number).toBeWithin(1000, 60_000);
    const sum = /^mailgw_delivery_duration_seconds_sum\{kind="forward"\} (\S+)$/m.exec(await (await fetch(`${serve.httpUrl}/metrics`)).text())?.[1];
    expect(Number(sum)).toBeWithin(1, 60);
  }, 60_000);
});

describe.skipIf(!LIBFAKETIME)("serve after a clock that was ahead is corrected", () => {
  test("/stats.json's last 30 days leave out the days after today, as its chart does", async () => {
    const dir = serveDir();
    const { clock, env } = fakeClock(dir);
    writeFileSync(clock, "+3d\n"); // a wrong RTC at boot, before NTP
    serve = await startServe("binary", dir, env);
    const c = await RawClient.connect(serve.smtpPort);
    await greet(c);
    expect(await sendMail(c, "info@company.com", simpleMessage("while the clock was ahead"))).toStartWith("250 2.0.0");
    c.end();
    writeFileSync(clock, "+0\n");
    const stats = (await (await fetch(`${serve.httpUrl}/stats.json`)).json()) as {
      receivedPerDay: { received: number }[];
      totals: { last30Days: { received: number; byAction: { archive: number } } };
      categories: { category: string; last30Days: number }[];
    };
    expect(stats.receivedPerDay.reduce((n, d) => n + d.received, 0)).toBe(0);
    expect(stats.totals.last30Days.received).toBe(0);
    expect(stats.totals.last30Days.byAction.archive).toBe(0);
    expect(stats.categories.filter((k) => k.last30Days > 0)).toEqual([]);
  }, 60_000);
});
