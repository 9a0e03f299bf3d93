/**
 * A rule listing one address twice in forward_to (as written, or with the domain in another
 * case or as its U-label): the real `mailgw serve` forwards one copy to it. Sent as two RCPT TO
 * of one transaction, a relay that does not merge them (Haraka, some providers) delivered two
 * copies to the mailbox. The relay here is a raw one, which keeps the commands as they came. `rules lint` names the repeated entry.
 */
import { afterEach, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { lintRules } from "../../src/rules/load.ts";
import { startRawRelay } from "../delivery/helpers.ts";
import { queueList, serveDir, startServe } from "../smtp/serve-process.ts";

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: fwd
    priority: 10
    action: forward
    forward_to: [ops@forward.example, desk@bücher.example, OPS@forward.example, ops@FORWARD.example, desk@xn--bcher-kva.example, ops@forward.example]
    conditions: [{ field: size, operator: gt, value: 0 }]
`;

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 30_000);

test("forward_to naming an address twice: one RCPT TO and one copy for it; lint warns at each repeat", async () => {
  // Each warning points at the repeated entry: OPS@ is kept (a server may tell local parts apart
  // by case), the other three are dropped.
  const line = RULES.split("\n")[6] ?? "";
  const at = (entry: string, from = 0): number => line.indexOf(entry, from) + 1;
  expect(lintRules(RULES, "rules.yaml").map((d) => [d.line, d.col, d.severity, d.code])).toEqual(
    [at("OPS@"), at("ops@FORWARD"), at("desk@xn--"), at("ops@forward.example", at("desk@xn--"))].map((col) => [7, col, "warning", "duplicate-forward-to"]),
  );
  const relay = await startRawRelay();
  cleanups.push(() => new Promise<void>((ok) => relay.server.close(() => ok())));
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  const s = await startServe("source", dir, { RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: String(relay.port), RELAY_SMTP_SECURE: "none" });
  cleanups.push(async () => {
    if (s.proc.exitCode === null) await s.stop("SIGKILL");
  });
  const t = nodemailer.createTransport({ host: "127.0.0.1", port: s.smtpPort, secure: false, ignoreTLS: true });
  const info = await t.sendMail({ from: "alice@example.org", to: "bob@company.com", subject: "dup", text: "one copy each" });
  t.close();
  const id = /Queued as (\S+)/.exec(info.response)?.[1] ?? "";
  const outcome = await s.waitForLog((l) => l.id === id && (l.msg === "delivered" || l.msg === "deferred" || l.msg === "failed"), 20_000);
  expect(outcome.msg).toBe("delivered");
  const rcpts = relay.capture.commands.filter((c) => /^RCPT TO:/i.test(c));
  expect(rcpts).toEqual(["RCPT TO:<ops@forward.example>", "RCPT TO:<desk@xn--bcher-kva.example>", "RCPT TO:<OPS@forward.example>"]);
  expect(relay.capture.bodies).toHaveLength(1);
  expect(await queueList(s.dir)).toEqual([]);
  expect(await s.stop()).toBe(0);
}, 30_000);
