/**
 * The surroundings of a real `mailgw serve` whose every metric family has samples, for the
 * Prometheus interop test: a relay that takes, refuses (550) or defers (451) a forward by its
 * recipient, a webhook receiver that answers 200, 400 or 503 by path, rules that route to them,
 * and a mail client that can use STARTTLS. All on loopback ports the caller picks.
 */
import nodemailer from "nodemailer";
import { SMTPServer } from "smtp-server";

export interface Listener {
  close(): Promise<void>;
}

/** Relay: `ok*@` recipients are taken, `perm*@` refused with 550, `temp*@` deferred with 451. */
export async function startRelay(port: number): Promise<Listener & { received: string[][] }> {
  const received: string[][] = [];
  const server = new SMTPServer({
    logger: false,
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    onRcptTo(address, _session, cb) {
      const code = address.address.startsWith("perm") ? 550 : address.address.startsWith("temp") ? 451 : 0;
      if (code === 0) return cb();
      cb(Object.assign(new Error(code === 550 ? "5.1.1 no such user" : "4.2.0 try later"), { responseCode: code }));
    },
    onData(stream, session, cb) {
      stream.resume();
      stream.on("end", () => {
        received.push(session.envelope.rcptTo.map((r) => r.address));
        cb();
      });
    },
  });
  await new Promise<void>((ok) => server.listen(port, "127.0.0.1", ok));
  return { received, close: () => new Promise<void>((ok) => server.close(() => ok())) };
}

/** Webhook receiver: /ok → 200 (delivered), /bad → 400 (failed), /later → 503 (deferred). */
export function startWebhook(port: number): Listener & { posts: string[] } {
  const posts: string[] = [];
  const status: Record<string, number> = { "/ok": 200, "/bad": 400, "/later": 503 };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port,
    fetch(req) {
      const path = new URL(req.url).pathname;
      posts.push(path);
      return new Response("", { status: status[path] ?? 404 });
    },
  });
  return { posts, close: async () => void (await server.stop(true)) };
}

/** A category with every character the text format must escape or a parser could trip on. */
export const ODD_CATEGORY = 'spam "bulk" \\ 견적, {x}=y';

/** Rules routing by recipient to every outcome; `[SPAM]` subjects are rejected. */
export function gatewayRules(webhookPort: number): string {
  const hook = (path: string) => `http://127.0.0.1:${webhookPort}${path}`;
  const rcpt = (to: string) => `[{ field: rcpt, operator: equals, value: "${to}" }]`;
  return `domains: [example.test]
default: { action: archive, category: default }
rules:
  - name: reject-spam
    priority: 100
    category: '${ODD_CATEGORY.replaceAll("'", "''")}'
    action: reject
    conditions: [{ field: subject, operator: contains, value: "[SPAM]" }]
  - { name: fwd-ok, priority: 50, category: sales, action: forward, forward_to: [ok@relay.test], conditions: ${rcpt("ok@example.test")} }
  - { name: fwd-perm, priority: 50, category: sales, action: forward, forward_to: [perm@relay.test], conditions: ${rcpt("perm@example.test")} }
  - { name: fwd-temp, priority: 50, category: sales, action: forward, forward_to: [temp@relay.test], conditions: ${rcpt("temp@example.test")} }
  - { name: hook-ok, priority: 40, category: hooks, action: webhook, url: "${hook("/ok")}", conditions: ${rcpt("hook-ok@example.test")} }
  - { name: hook-bad, priority: 40, category: hooks, action: webhook, url: "${hook("/bad")}", conditions: ${rcpt("hook-bad@example.test")} }
  - { name: hook-later, priority: 40, category: hooks, action: webhook, url: "${hook("/later")}", conditions: ${rcpt("hook-later@example.test")} }
`;
}

/** One message in its own SMTP session (with STARTTLS when `tls`): accepted (250) or rejected (550). */
export async function send(port: number, to: string, subject: string, tls = false): Promise<"accepted" | "rejected"> {
  const transport = nodemailer.createTransport({
    host: "127.0.0.1",
    port,
    secure: false,
    ...(tls ? { requireTLS: true, tls: { rejectUnauthorized: false } } : { ignoreTLS: true }),
  });
  try {
    await transport.sendMail({ envelope: { from: "sender@origin.example", to: [to] }, raw: `From: sender@origin.example\r\nTo: ${to}\r\nSubject: ${subject}\r\n\r\nbody\r\n` });
    return "accepted";
  } catch (err) {
    if ((err as { responseCode?: number }).responseCode === 550) return "rejected";
    throw err;
  } finally {
    transport.close();
  }
}
