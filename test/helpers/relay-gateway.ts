/**
 * The real `mailgw serve` forwarding through a real smarthost (Postfix, Exim) for the relay
 * interoperability tests: a rule forwarding every message to FORWARD_TO, the RELAY_SMTP_*
 * settings in `.env` (so a test can rewrite them and send SIGHUP), quick retries; and a client
 * that hands it messages over one SMTP session.
 */
import { expect } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { RawClient, greet } from "../smtp/helpers.ts";
import { queueList, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";
import { leadingFields, testMessage, type Captured } from "./interop.ts";

export const FORWARD_TO = ["ops@forward.example", "audit@forward.example"];
const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: to-ops
    priority: 10
    category: ops
    action: forward
    forward_to: [${FORWARD_TO.join(", ")}]
    conditions:
      - { field: size, operator: gt, value: 0 }
`;

export interface RelaySettings {
  port: number;
  user: string;
  pass: string;
}

/** Writes `.env` with the relay settings (STARTTLS, certificate not verified) and `vars` on top. */
export function writeRelayEnv(dir: string, relay: RelaySettings, vars: Record<string, string> = {}): void {
  const all = {
    RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: String(relay.port), RELAY_SMTP_SECURE: "starttls", RELAY_SMTP_TLS_VERIFY: "false",
    RELAY_SMTP_USER: relay.user, RELAY_SMTP_PASS: relay.pass, ...vars,
  };
  writeFileSync(join(dir, ".env"), Object.entries(all).map(([k, v]) => `${k}=${v}\n`).join(""));
}

/** mailgw with the forward rule on `ports`; relay settings from `.env` (so SIGHUP can change them). */
export async function startRelayGateway(ports: { smtp: number; http: number }, relay: RelaySettings, vars: Record<string, string> = {}): Promise<ServeProcess> {
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  writeRelayEnv(dir, relay, vars);
  return startServe("source", dir, { SMTP_PORT: String(ports.smtp), HTTP_PORT: String(ports.http), QUEUE_RETRY_BASE_SECONDS: "0.5" });
}

export function forwardMessage(n: number, from = "alice@sender.example", body = `message ${n}\r\n.dot line\r\n`): Buffer {
  return testMessage(`forward ${n}`, body, { from });
}

export interface ToForward {
  raw: Buffer;
  from: string;
  /** MAIL FROM parameters, with their leading space. */
  params?: string;
}

/** Sends each message to mailgw (RCPT bob@company.com) over one session; returns mailgw's ids. */
export async function sendToGateway(s: ServeProcess, messages: ToForward[]): Promise<string[]> {
  const c = await RawClient.connect(s.smtpPort);
  const ids: string[] = [];
  const expect250 = (what: string, reply: string, code = "250"): void => {
    if (!reply.startsWith(code)) throw new Error(`mailgw answered ${what} with ${reply}`);
  };
  try {
    await greet(c, "client.test");
    for (const m of messages) {
      expect250("MAIL", await c.cmd(`MAIL FROM:<${m.from}>${m.params ?? ""}`));
      expect250("RCPT", await c.cmd("RCPT TO:<bob@company.com>"));
      expect250("DATA", await c.cmd("DATA"), "354");
      c.write(Buffer.concat([Buffer.from(m.raw.toString("latin1").replace(/^\./gm, ".."), "latin1"), Buffer.from(".\r\n")]));
      const reply = await c.reply();
      const id = /^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1];
      if (!id) throw new Error(`mailgw answered ${reply}`);
      ids.push(id);
    }
  } finally {
    c.end();
  }
  return ids;
}

export interface WrongPasswordCase {
  /** Starts mailgw with `vars` on top of the right relay settings. */
  gateway: (vars: Record<string, string>) => Promise<ServeProcess>;
  relay: RelaySettings;
  /** Copies of a message the relay passed on (the test's capture server). */
  captured: (raw: Buffer) => unknown[];
  /** Waits for the relay's own log line refusing the login (written after `startedAt`). */
  relayRefused: () => Promise<void>;
}

/**
 * The wrong-password scenario every smarthost test runs: the forward is deferred (535 / EAUTH)
 * and listed so; after the right password in `.env` and a SIGHUP it is delivered once; neither
 * password, nor the AUTH PLAIN blob carrying it, is in anything mailgw wrote.
 */
export async function wrongPasswordThenFixed(c: WrongPasswordCase): Promise<void> {
  const wrong = "Wr0ng-relay-pass";
  const s = await c.gateway({ RELAY_SMTP_PASS: wrong });
  try {
    const raw = forwardMessage(100);
    const [id = ""] = await sendToGateway(s, [{ raw, from: "alice@sender.example" }]);
    const deferred = await s.waitForLog((l) => l.msg === "deferred" && l.id === id, 20_000);
    expect(String(deferred.error)).toMatch(/535|EAUTH/);
    expect(String(deferred.error)).toContain("check RELAY_SMTP_USER and RELAY_SMTP_PASS");
    await c.relayRefused();
    const [listed] = await queueList(s.dir);
    expect({ id: listed?.id, state: listed?.state }).toEqual({ id, state: "deferred" });

    writeRelayEnv(s.dir, c.relay); // the right password
    s.proc.kill("SIGHUP");
    await s.waitForLog((l) => l.msg === "relay settings reloaded");
    await s.waitForLog((l) => l.msg === "delivered" && l.id === id, 20_000);
    await Bun.sleep(300);
    expect(c.captured(raw)).toHaveLength(1);
    expect(await queueList(s.dir)).toEqual([]);
  } finally {
    expect(await s.stop()).toBe(0);
  }
  const output = JSON.stringify(s.logs) + s.stderr();
  const { user, pass } = c.relay;
  for (const secret of [wrong, pass, Buffer.from(`\0${user}\0${wrong}`).toString("base64"), Buffer.from(wrong).toString("base64")]) {
    expect(output.includes(secret)).toBe(false);
  }
}

/** The 20 forwards each smarthost test sends: plain ones, an 8-bit body (BODY=8BITMIME), a UTF-8 sender (SMTPUTF8). */
export function twentyForwards(): ToForward[] {
  const messages: ToForward[] = Array.from({ length: 20 }, (_, i) => ({ raw: forwardMessage(i), from: "alice@sender.example", params: "" }));
  messages[1] = { raw: forwardMessage(1, "alice@sender.example", "8-bit body: Grüße, ½ €\r\n"), from: "alice@sender.example", params: " BODY=8BITMIME" };
  messages[2] = { raw: forwardMessage(2, "jörg@sender.example"), from: "jörg@sender.example", params: " SMTPUTF8" };
  return messages;
}

/**
 * Sends `messages` through mailgw and waits until the capture behind the smarthost has each and
 * mailgw logged each delivered (then 300 ms for a duplicate to show). Then checks that each arrived
 * exactly once, with the original sender, FORWARD_TO, mailgw's Received: line naming its id and the
 * original bytes after the smarthost's own Received:, which is returned per message (latin1) for
 * the smarthost-specific checks. Returns mailgw's ids too.
 */
export async function forwardEachOnce(
  s: ServeProcess,
  messages: ToForward[],
  capturedOf: (raw: Buffer) => Captured[],
  waitFor: (what: string, check: () => boolean) => Promise<void>,
): Promise<{ ids: string[]; relayReceived: string[] }> {
  const ids = await sendToGateway(s, messages);
  await waitFor(`${messages.length} messages at the capture`, () => messages.every((m) => capturedOf(m.raw).length > 0));
  for (const id of ids) await s.waitForLog((l) => l.msg === "delivered" && l.id === id);
  await Bun.sleep(300); // a duplicate would arrive now
  const relayReceived = messages.map((m, i) => {
    const got = capturedOf(m.raw);
    expect(got).toHaveLength(1);
    const { from, to, data } = got[0] as Captured;
    expect({ from, to: [...to].sort() }).toEqual({ from: m.from, to: [...FORWARD_TO].sort() });
    const { fields, rest } = leadingFields(data, 2);
    // RFC 6531: a transaction that declared SMTPUTF8 is received "with UTF8SMTP".
    expect(fields[1]).toContain(`by mx.test (mailgw) with ${(m.params ?? "").includes("SMTPUTF8") ? "UTF8SMTP" : "ESMTP"}\r\n`);
    expect(fields[1]).toContain(`id ${ids[i]} for <bob@company.com>`);
    expect(Buffer.compare(rest, m.raw)).toBe(0);
    return fields[0] ?? "";
  });
  return { ids, relayReceived };
}

/**
 * RELAY_SMTP_TLS_VERIFY=true against a smarthost with a self-signed certificate: the forward is
 * deferred with a certificate error in `queue list` and never reaches the capture; `noLogin`
 * then checks in the smarthost's own log that no AUTH (or MAIL) was sent.
 */
export async function certificateRefused(
  gateway: (vars: Record<string, string>) => Promise<ServeProcess>,
  capturedOf: (raw: Buffer) => unknown[],
  noLogin: () => Promise<void>,
): Promise<void> {
  const s = await gateway({ RELAY_SMTP_TLS_VERIFY: "true" });
  try {
    const raw = forwardMessage(200);
    const [id = ""] = await sendToGateway(s, [{ raw, from: "alice@sender.example" }]);
    await s.waitForLog((l) => l.msg === "deferred" && l.id === id, 20_000);
    const [listed] = await queueList(s.dir);
    expect({ id: listed?.id, state: listed?.state }).toEqual({ id, state: "deferred" });
    expect(listed?.lastError).toMatch(/certificate/i);
    console.log(`queue list last error: ${listed?.lastError}`);
    await noLogin();
    expect(capturedOf(raw)).toEqual([]);
  } finally {
    expect(await s.stop()).toBe(0);
  }
}
