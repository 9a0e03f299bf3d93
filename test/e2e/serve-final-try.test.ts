/**
 * A delivery's final try at QUEUE_MAX_AGE_HOURS (retry.ts pulls its last retry in to the limit),
 * through the real `mailgw serve` (from source) with its wall clock stepped by libfaketime to the
 * limit, as the hours until then would pass. The target's last attempt had failed (here the
 * delivery's own first one; in production often an hour before, the receiver fixed since), but
 * its slot was free: the final try must be made, not skipped as "waiting for a slot while its
 * target fails" (expire.ts), which gave up mail a receiver or relay back up would have taken.
 * Skipped, with the reason, where libfaketime is not installed.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { relayVars, startRelay, waitFor, type ScriptedRelay } from "../delivery/helpers.ts";
import { greet, RawClient, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { queueList, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";
import { fakeClock, LIBFAKETIME } from "../helpers/fake-clock.ts";
import { recordPosts } from "../helpers/post-recorder.ts";


let serve: ServeProcess | null = null;
let relay: ScriptedRelay | null = null;
const stops: (() => unknown)[] = [];
afterEach(async () => {
  await serve?.stop();
  serve = null;
  await relay?.close();
  relay = null;
  for (const s of stops.splice(0)) await s();
}, 60_000);

/**
 * serve's wall clock read from a file (an offset); the monotonic clock, and so its timers, left
 * alone. 0.01 h = 36 s: the first retry (60 s ± 20%) is pulled in to the limit, the final try.
 */
function clockedEnv(dir: string): { clock: string; env: Record<string, string> } {
  const { clock, env } = fakeClock(dir);
  return { clock, env: { ...env, QUEUE_RETRY_BASE_SECONDS: "60", QUEUE_MAX_AGE_HOURS: "0.01" } };
}

async function send(port: number, subjects: string[]): Promise<void> {
  const c = await RawClient.connect(port);
  await greet(c);
  for (const s of subjects) expect(await sendMail(c, "orders@company.com", simpleMessage(s))).toStartWith("250 2.0.0");
  c.end();
}

describe.skipIf(!LIBFAKETIME)("the final try at QUEUE_MAX_AGE_HOURS", () => {
  test("a webhook post whose receiver answered 500 and is back is posted at the limit and delivered, not given up untried", async () => {
    const receiver = recordPosts((n) => (n === 1 ? new Response("down", { status: 500 }) : new Response("ok")));
    const posts = receiver.posts;
    stops.push(() => receiver.stop());
    const dir = serveDir();
    writeFileSync(join(dir, "rules.yaml"), `domains: [company.com]
rules:
  - { name: hook, priority: 1, action: webhook, url: "http://127.0.0.1:${receiver.port}/hook", conditions: [{ field: subject, operator: contains, value: hook }] }
`);
    const { clock, env } = clockedEnv(dir);
    serve = await startServe("source", dir, env);
    await send(serve.smtpPort, ["hook 1"]);
    const s = serve;
    const first = await s.waitForLog((l) => l.msg === "deferred");
    expect(Date.parse(String(first.next_attempt)) - Date.parse(String(first.time))).toBeLessThanOrEqual(37_000);
    // The 36 s pass (the receiver is fixed meanwhile): the delivery's final try is due.
    writeFileSync(clock, "+40s\n");
    const end = await s.waitForLog((l) => l.msg === "delivered" || l.msg === "failed", 15_000);
    expect(end).toMatchObject({ msg: "delivered", attempt: 2 });
    expect(posts).toHaveLength(2);
  }, 60_000);

  test("a forward whose recipient got 450 (the relay's last forward failed for now) is sent at the limit, not given up untried", async () => {
    relay = await startRelay();
    relay.deferRecipients.set("sales@forward.example", 1); // fixed after the first try
    relay.deferRecipients.set("busy@forward.example", Infinity); // still busy: fails after its own final try
    const dir = serveDir();
    writeFileSync(join(dir, "rules.yaml"), `domains: [company.com]
rules:
  - { name: fwd, priority: 1, action: forward, forward_to: [sales@forward.example], conditions: [{ field: subject, operator: contains, value: fwd }] }
  - { name: busy, priority: 2, action: forward, forward_to: [busy@forward.example], conditions: [{ field: subject, operator: contains, value: busy }] }
`);
    const { clock, env } = clockedEnv(dir);
    serve = await startServe("source", dir, { ...env, ...relayVars(relay) });
    const s = serve;
    await send(s.smtpPort, ["fwd 1"]);
    await s.waitForLog((l) => l.msg === "deferred" && l.rule === "fwd");
    await send(s.smtpPort, ["busy 1"]); // the relay's last forward then failed for now
    await s.waitForLog((l) => l.msg === "deferred" && l.rule === "busy");
    writeFileSync(clock, "+40s\n");
    const r = relay;
    await waitFor(() => r.received.length === 1, 15_000, "the forward at the relay");
    expect(r.received[0]?.to).toEqual(["sales@forward.example"]);
    const busy = await s.waitForLog((l) => l.msg === "failed" && l.rule === "busy", 15_000);
    // Given up after its own final try, with the relay's answer to it.
    expect(busy.attempt).toBe(2);
    expect(String(busy.error)).toStartWith("gave up after 0.01 h (QUEUE_MAX_AGE_HOURS): ");
    expect(String(busy.error)).toContain("450");
    const failed = await queueList(dir, "failed");
    expect(failed.map((e) => e.rule)).toEqual(["busy"]);
  }, 60_000);
});
