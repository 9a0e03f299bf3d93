/**
 * The real compiled `serve` with its wall clock stepped while it runs, as NTP steps a clock that
 * was ahead (or an RTC kept in local time is corrected at boot): libfaketime (Debian package
 * `faketime`) reads the offset from a file on every call; the monotonic clock is left alone,
 * as a real step leaves it. Skipped, with the reason, where libfaketime is not installed.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { greet, RawClient } from "../smtp/helpers.ts";
import { cleanupBinary, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

const LIBFAKETIME = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1"].find(existsSync);
if (!LIBFAKETIME) console.warn("skip: libfaketime not installed (apt-get install faketime)");

let serve: ServeProcess | null = null;
afterEach(async () => {
  await serve?.stop();
  serve = null;
  cleanupBinary();
});

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
    const clock = join(dir, "clock");
    writeFileSync(clock, "+0\n");
    serve = await startServe("binary", dir, {
      LD_PRELOAD: LIBFAKETIME ?? "",
      FAKETIME_TIMESTAMP_FILE: clock,
      FAKETIME_NO_CACHE: "1",
      DONT_FAKE_MONOTONIC: "1",
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
