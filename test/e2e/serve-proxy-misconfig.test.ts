/**
 * A proxy that sends PROXY headers to a `mailgw serve` started without SMTP_PROXY_PROTOCOL
 * (nginx `proxy_protocol on` with the variable forgotten): smtp-server answers every such
 * connection `421 You talk too soon`, so all mail is deferred. The log must say why, once a
 * minute at most, at warning level; a client that types `PROXY` after the greeting is no proxy.
 * And with SMTP_PROXY_PROTOCOL on, a stop that closes a socket still sending its header is not
 * logged as the proxy's fault.
 */
import { expect, test } from "bun:test";
import { RawClient, greet } from "../smtp/helpers.ts";
import { serveEachTest } from "../smtp/serve-process.ts";

const serve = serveEachTest();

const V2_LOCAL = Buffer.concat([Buffer.from("0d0a0d0a000d0a515549540a", "hex"), Buffer.from([0x20, 0x00, 0x00, 0x00])]);
const isStrayWarning = (l: Record<string, unknown>): boolean => l.level === "warn" && String(l.msg).includes("SMTP_PROXY_PROTOCOL is off");

test("PROXY headers to a listener without SMTP_PROXY_PROTOCOL: 421 as before, and one warning naming the fix", async () => {
  const s = await serve({});

  const typed = await RawClient.connect(s.smtpPort);
  await greet(typed);
  expect(await typed.cmd("PROXY TCP4 192.0.2.7 192.0.2.1 4444 25")).toMatch(/^500 /);
  expect(await typed.cmd("QUIT")).toMatch(/^221 /);
  await s.waitForLog((l) => l.msg === "smtp session" && l.helo === "client.example");
  expect(s.logs.filter(isStrayWarning)).toHaveLength(0);

  for (const preface of [Buffer.from("PROXY TCP4 203.0.113.9 192.0.2.1 5555 25\r\n"), V2_LOCAL]) {
    const c = await RawClient.connect(s.smtpPort, "127.0.0.1", preface);
    expect(await c.reply()).toMatch(/^421 /);
    c.end();
  }
  const warning = await s.waitForLog(isStrayWarning);
  expect(warning).toMatchObject({ peer: "127.0.0.1", connections: 1 });
  expect(String(warning.hint)).toContain("SMTP_PROXY_PROTOCOL=true");
  expect(await s.stop()).toBe(0);
  // Throttled: the second proxied connection is counted for the next warning, not a line of its own.
  expect(s.logs.filter(isStrayWarning)).toHaveLength(1);
}, 30_000);

// The stop closes a socket whose PROXY header is still awaited: mailgw's doing, not the proxy's.
test("a stop while a PROXY header is awaited: no 'PROXY header refused' warning, no session line for it", async () => {
  const s = await serve({ SMTP_PROXY_PROTOCOL: "true" });
  const c = await RawClient.connect(s.smtpPort, "127.0.0.1", "PROXY TCP4 203.0.113.9");
  await Bun.sleep(200);
  expect(await s.stop()).toBe(0);
  expect(await c.waitClose()).toBe(true);
  expect(s.logs.filter((l) => l.msg === "PROXY header refused" || l.msg === "smtp session")).toEqual([]);
}, 30_000);
