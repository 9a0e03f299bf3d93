/**
 * QUEUE_MAX_AGE_HOURS after a clock that was ahead is corrected (a wrong RTC at boot, then NTP),
 * through the real `mailgw serve` (from source) with its wall clock read by libfaketime from a
 * file: a post taken while the clock was 30 days ahead, to a receiver that keeps answering 500,
 * is given up at the limit counted from the correction, not retried hourly for 30 days and the
 * limit on top (its age counted from a time the clock has not reached yet).
 * Skipped, with the reason, where libfaketime is not installed.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { greet, RawClient, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { queueList, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";
import { fakeClock, LIBFAKETIME } from "../helpers/fake-clock.ts";
import { recordPosts } from "../helpers/post-recorder.ts";


const stops: (() => unknown)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
}, 60_000);

describe.skipIf(!LIBFAKETIME)("serve after a clock that was ahead is corrected", () => {
  test("a post taken while the clock was 30 days ahead is given up at QUEUE_MAX_AGE_HOURS from the correction", async () => {
    const receiver = recordPosts(() => new Response("down", { status: 500 }));
    const posts = receiver.posts;
    stops.push(() => receiver.stop());
    const dir = serveDir();
    writeFileSync(join(dir, "rules.yaml"), `domains: [company.com]
rules:
  - { name: hook, priority: 1, action: webhook, url: "http://127.0.0.1:${receiver.port}/hook", conditions: [{ field: subject, operator: contains, value: hook }] }
`);
    const { clock, env } = fakeClock(dir, "+30d");
    const serve: ServeProcess = await startServe("source", dir, { ...env, QUEUE_RETRY_BASE_SECONDS: "60", QUEUE_MAX_AGE_HOURS: "1" });
    stops.push(() => serve.stop());
    const c = await RawClient.connect(serve.smtpPort);
    await greet(c);
    expect(await sendMail(c, "orders@company.com", simpleMessage("hook 1"))).toStartWith("250 2.0.0");
    c.end();
    await serve.waitForLog((l) => l.msg === "deferred" && l.attempt === 1);
    writeFileSync(clock, "+0\n"); // NTP corrects the clock
    await serve.waitForLog((l) => l.msg === "deliveries scheduled by a clock that has gone back since are due now");
    await serve.waitForLog((l) => l.msg === "deferred" && l.attempt === 2);
    // Two hours pass (the receiver still answers 500): the limit, an hour, is over.
    writeFileSync(clock, "+2h\n");
    const end = await serve.waitForLog((l) => l.msg === "failed", 15_000);
    expect(String(end.error)).toStartWith("gave up after 1 h (QUEUE_MAX_AGE_HOURS): ");
    expect((await queueList(dir, "failed")).map((e) => e.id)).toEqual([String(end.id)]);
  }, 60_000);
});
