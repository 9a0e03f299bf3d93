/**
 * A real `mailgw serve` whose rules forward to a scripted relay (test/delivery/helpers.ts), and
 * one message sent into it over SMTP: the set-up the relay-side suites (long lines, SMTPUTF8,
 * 7-bit conversion) share. Both processes are closed by the suite's `cleanups`, last first.
 */
import { expect } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { relayVars, startRelay, type RelayOptions, type ScriptedRelay } from "../delivery/helpers.ts";
import { greet, RawClient } from "../smtp/helpers.ts";
import { serveDir, startServe, type ServeMode, type ServeProcess } from "../smtp/serve-process.ts";
import { freePortsIn } from "./interop.ts";

export type Cleanups = (() => Promise<unknown> | void)[];

/** `ports`: the range the relay and serve's SMTP and HTTP ports are taken from; without it, any free ones. */
export async function forwardGateway(
  cleanups: Cleanups,
  opts: { mode: ServeMode; rules: string; relay?: RelayOptions; ports?: [number, number] },
): Promise<{ relay: ScriptedRelay; s: ServeProcess }> {
  const ports = opts.ports ? await freePortsIn(3, ...opts.ports) : null;
  const relay = await startRelay({ ...opts.relay, ...(ports ? { port: ports[0] } : {}) });
  cleanups.push(() => relay.close());
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), opts.rules);
  const vars: Record<string, string> = ports ? { SMTP_PORT: String(ports[1]), HTTP_PORT: String(ports[2]) } : {};
  const s = await startServe(opts.mode, dir, { ...relayVars(relay), ...vars });
  cleanups.push(async () => {
    if (s.proc.exitCode === null) await s.stop("SIGKILL");
  });
  return { relay, s };
}

/** `data` (dot-stuffed here) from alice@example.org to bob@company.com; resolves with the `250 … Queued as <id>` line. */
export async function sendOne(port: number, data: string, opts: { mailParams?: string; helo?: string } = {}): Promise<string> {
  const c = await RawClient.connect(port);
  await greet(c, opts.helo);
  expect(await c.cmd(`MAIL FROM:<alice@example.org>${opts.mailParams ?? ""}`)).toStartWith("250");
  expect(await c.cmd("RCPT TO:<bob@company.com>")).toStartWith("250");
  expect(await c.cmd("DATA")).toStartWith("354");
  c.write(Buffer.from(`${data.replace(/^\./gm, "..")}.\r\n`, "utf8"));
  const reply = await c.reply();
  expect(reply).toStartWith("250 2.0.0 Queued as ");
  await c.cmd("QUIT");
  return reply;
}
