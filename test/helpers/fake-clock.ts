/**
 * A wall clock for serve read from a file, for the tests of clock steps (Debian package
 * `faketime`): libfaketime reads the offset (`+0`, `-1d`, `+30d`) from the file on every call;
 * the monotonic clock, and so serve's timers, is left alone, as a real step leaves it.
 * Test files skip, with the reason printed, where libfaketime is not installed.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const LIBFAKETIME = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1"].find(existsSync);
if (!LIBFAKETIME) console.warn("skip: libfaketime not installed (apt-get install faketime)");

/** serve's environment with its wall clock read from the file `clock` in `dir`, set to `offset` first. */
export function fakeClock(dir: string, offset = "+0"): { clock: string; env: Record<string, string> } {
  const clock = join(dir, "clock");
  writeFileSync(clock, `${offset}\n`);
  return { clock, env: { LD_PRELOAD: LIBFAKETIME ?? "", FAKETIME_TIMESTAMP_FILE: clock, FAKETIME_NO_CACHE: "1", DONT_FAKE_MONOTONIC: "1" } };
}
