/**
 * serve/signals.ts's stop deadline: a stop that hangs ends with an error line naming the
 * service it waited for and exit 1, before the supervisor's SIGKILL (TimeoutStopSec); a stop
 * that finishes leaves no timer behind. The signal is emitted on `process` (its handlers run
 * as for a real SIGTERM); a real serve's stop is covered by test/e2e.
 */
import { afterEach, expect, test } from "bun:test";
import { STOP_DEADLINE_MS, runUntilSignalled } from "../../src/serve/signals.ts";
import { STOP_TIMEOUT_SECONDS } from "../../src/systemd/unit.ts";
import type { Gateway } from "../../src/serve/gateway.ts";
import { serviceGroup } from "../../src/serve/services.ts";
import { silentLogger } from "../../src/log/logger.ts";
import { captureLogger } from "../smtp/helpers.ts";

const exits: number[] = [];
afterEach(() => {
  exits.length = 0;
});

function gateway(stop: () => Promise<void>, stopping: () => string | null): Gateway {
  return { smtpAddress: () => null, reload: async () => {}, stop, stopping };
}

test("systemd's TimeoutStopSec (and docker's stop timeout) is longer than serve's own deadline", () => {
  expect(STOP_TIMEOUT_SECONDS * 1000).toBeGreaterThan(STOP_DEADLINE_MS + 5000);
});

test("a stop that hangs: logged with the service it waits for, then exit 1", async () => {
  const logs = captureLogger();
  const stopped: string[] = [];
  const group = serviceGroup([
    { name: "pipeline", start() {}, stop: () => void stopped.push("pipeline") },
    { name: "delivery", start() {}, stop: () => new Promise<void>(() => {}) },
    { name: "smtp", start() {}, stop: () => void stopped.push("smtp") },
  ], silentLogger);
  await group.start();
  expect(group.stopping()).toBeNull();
  const hung = gateway(() => group.stop(), () => group.stopping());
  const before = signalListeners();
  const done = runUntilSignalled(Promise.resolve(hung), logs, { ms: 150, exit: (code) => exits.push(code) });
  await Bun.sleep(20);
  process.emit("SIGTERM", "SIGTERM");
  await Bun.sleep(60);
  expect(exits).toEqual([]);
  const deadline = Date.now() + 3000;
  while (exits.length === 0 && Date.now() < deadline) await Bun.sleep(10);
  expect(exits).toEqual([1]);
  const line = logs.lines.find((l) => l.level === "error");
  expect(line?.msg).toBe("the stop did not finish within 0.15 s: exiting without waiting");
  expect(line?.fields?.still_stopping).toBe("delivery");
  expect(stopped).toEqual(["smtp"]);
  void done;
  // The handlers stay (a real exit ends the process here): removed for the next test.
  for (const [signal, known] of before) {
    for (const l of process.listeners(signal) as NodeJS.SignalsListener[]) if (!known.includes(l)) process.off(signal, l);
  }
});

function signalListeners(): Map<NodeJS.Signals, NodeJS.SignalsListener[]> {
  const signals: NodeJS.Signals[] = ["SIGTERM", "SIGINT", "SIGHUP"];
  return new Map(signals.map((s) => [s, process.listeners(s) as NodeJS.SignalsListener[]]));
}

test("in a process of its own: a stop stuck on a promise nothing settles is logged and exits 1, not 0 halfway", async () => {
  const signals = JSON.stringify(new URL("../../src/serve/signals.ts", import.meta.url).pathname);
  const script = `
    const { runUntilSignalled } = await import(${signals});
    const logger = { debug() {}, info: (m) => console.log(m), warn: (m) => console.log(m), error: (m, f) => console.log(m, JSON.stringify(f)) };
    const gateway = { smtpAddress: () => null, reload: async () => {}, stop: () => new Promise(() => {}), stopping: () => "smtp" };
    runUntilSignalled(Promise.resolve(gateway), logger, { ms: 300, exit: (code) => process.exit(code) });
    console.log("ready");
    setTimeout(() => {}, 100);`;
  const child = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
  const reader = child.stdout.getReader();
  let out = "";
  while (!out.includes("ready")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += new TextDecoder().decode(value);
  }
  child.kill("SIGTERM");
  const code = await child.exited;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    out += new TextDecoder().decode(value);
  }
  expect(code).toBe(1);
  expect(out).toContain("the stop did not finish within 0.3 s: exiting without waiting");
  expect(out).toContain(`"still_stopping":"smtp"`);
});

test("in a process of its own: a second SIGTERM during a slow stop exits 1 at once", async () => {
  const signals = JSON.stringify(new URL("../../src/serve/signals.ts", import.meta.url).pathname);
  const script = `
    const { runUntilSignalled } = await import(${signals});
    const logger = { debug() {}, info: (m) => console.log(m), warn: (m) => console.log(m), error: (m) => console.log(m) };
    const gateway = { smtpAddress: () => null, reload: async () => {}, stop: () => new Promise(() => {}), stopping: () => "smtp" };
    runUntilSignalled(Promise.resolve(gateway), logger, { ms: 60_000, exit: (code) => process.exit(code) });
    setInterval(() => {}, 1000); // alive until a signal ends it, as serve's listeners keep it
    console.log("ready");`;
  const child = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
  const reader = child.stdout.getReader();
  let out = "";
  const readUntil = async (text: string): Promise<void> => {
    while (!out.includes(text)) {
      const { value, done } = await reader.read();
      if (done) return;
      out += new TextDecoder().decode(value);
    }
  };
  await readUntil("ready");
  child.kill("SIGTERM");
  await readUntil("stopping:");
  child.kill("SIGTERM"); // the admin's "stop now"
  expect(await child.exited).toBe(1);
  await readUntil("\u0000"); // the rest, to its end
  expect(out).toContain("second stop signal: exiting without waiting");
});

test("a stop that finishes in time: no exit, no error, handlers removed", async () => {
  const logs = captureLogger();
  const quick = gateway(() => Bun.sleep(30), () => null);
  const listeners = process.listenerCount("SIGTERM");
  const done = runUntilSignalled(Promise.resolve(quick), logs, { ms: 150, exit: (code) => exits.push(code) });
  await Bun.sleep(20);
  process.emit("SIGTERM", "SIGTERM");
  await done;
  await Bun.sleep(250);
  expect(exits).toEqual([]);
  expect(logs.lines.filter((l) => l.level === "error")).toEqual([]);
  expect(logs.lines.map((l) => l.msg)).toContain("stopped");
  expect(process.listenerCount("SIGTERM")).toBe(listeners);
});
