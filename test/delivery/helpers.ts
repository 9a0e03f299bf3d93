/**
 * Test helpers for delivery: temp data dirs with a seeded queue, a self-signed certificate,
 * and a real smtp-server relay (STARTTLS + AUTH) whose behaviour a test can script.
 */
import type { Database } from "bun:sqlite";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from "smtp-server";
import { loadConfig, type Config } from "../../src/config/config.ts";
import { newMessageId } from "../../src/spool/ids.ts";
import { openDatabase } from "../../src/store/db.ts";
import type { DeliveryKind, DeliveryState } from "../../src/types.ts";

export function tempDir(prefix = "mailgw-delivery-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

let certCache: { key: string; cert: string } | null = null;

/** A self-signed certificate for 127.0.0.1 / localhost, made with openssl once per test process. */
export function selfSignedCert(): { key: string; cert: string } {
  if (certCache) return certCache;
  const dir = tempDir("mailgw-cert-");
  const key = join(dir, "key.pem");
  const cert = join(dir, "cert.pem");
  const r = Bun.spawnSync([
    "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ]);
  if (r.exitCode !== 0) throw new Error(`openssl failed: ${r.stderr.toString()}`);
  certCache = { key: readFileSync(key, "utf8"), cert: readFileSync(cert, "utf8") };
  return certCache;
}

export interface TestEnv {
  dir: string;
  dataDir: string;
  dbPath: string;
  db: Database;
  config: Config;
  env: Record<string, string>;
}

/** A data dir + database + Config from the given variables (no process.env, no .env). */
export function makeEnv(vars: Record<string, string> = {}): TestEnv {
  const dir = tempDir();
  const dataDir = join(dir, "data");
  mkdirSync(join(dataDir, "spool"), { recursive: true });
  const dbPath = join(dataDir, "mail-gateway.db");
  const env: Record<string, string> = {
    DATA_DIR: dataDir,
    DATABASE_URL: `file:${dbPath}`,
    RULES_FILE: join(dir, "rules.yaml"),
    SMTP_HOSTNAME: "mx.test",
    QUEUE_RETRY_BASE_SECONDS: "0.05",
    LOG_FORMAT: "json",
    ...vars,
  };
  const config = loadConfig({ env, cwd: dir, isTty: false });
  const db = openDatabase(dbPath);
  return { dir, dataDir, dbPath, db, config, env };
}

export interface SeedOptions {
  kind?: DeliveryKind;
  target?: string[] | string;
  state?: DeliveryState;
  mailFrom?: string;
  raw?: string | Uint8Array;
  createdAt?: number;
  rule?: string | null;
  category?: string;
}

export const SAMPLE_MESSAGE =
  "Received: from client.example by mx.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
  "From: Alice <alice@example.org>\r\nTo: sales@company.com\r\nSubject: Quote request\r\n" +
  "Message-ID: <abc@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
  "Hello,\r\nplease send a quote.\r\n";

/** Inserts a message row, one delivery and the spool file, as intake would. Returns the message id. */
export function seedDelivery(t: TestEnv, o: SeedOptions = {}): string {
  const id = newMessageId();
  const now = o.createdAt ?? Date.now();
  const raw = typeof o.raw === "string" || o.raw === undefined ? Buffer.from(o.raw ?? SAMPLE_MESSAGE, "binary") : o.raw;
  writeFileSync(join(t.dataDir, "spool", `${id}.eml`), raw);
  const kind = o.kind ?? "forward";
  const target = o.target ?? (kind === "forward" ? ["sales@company.com"] : "http://127.0.0.1:1/hook");
  t.db
    .query(
      `INSERT INTO messages (id, received_at, client_ip, helo, tls, mail_from, recipients, subject, size, rule, category, action, archive, status)
       VALUES (?, ?, '192.0.2.7', 'client.example', 1, ?, '["orders@company.com"]', 'Quote request', ?, ?, ?, ?, 0, 'done')`,
    )
    .run(id, now, o.mailFrom ?? "alice@example.org", raw.byteLength, o.rule ?? "test-rule", o.category ?? "sales", kind);
  t.db
    .query(
      `INSERT INTO deliveries (message_id, kind, target, rule, category, state, attempts, created_at, next_attempt_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)`,
    )
    .run(id, kind, typeof target === "string" ? target : JSON.stringify(target), o.rule ?? "test-rule", o.category ?? "sales", o.state ?? "queued", now, now, now);
  return id;
}

export interface DeliveryRow {
  id: number;
  state: DeliveryState;
  attempts: number;
  last_error: string | null;
}

export function deliveryOf(db: Database, messageId: string): DeliveryRow {
  const row = db.query<DeliveryRow, [string]>(`SELECT id, state, attempts, last_error FROM deliveries WHERE message_id = ?`).get(messageId);
  if (!row) throw new Error(`no delivery for ${messageId}`);
  return row;
}

export function attemptsOf(db: Database, messageId: string): { ok: number; reply: string | null; target: string; duration_ms: number }[] {
  return db
    .query<{ ok: number; reply: string | null; target: string; duration_ms: number }, [string]>(
      `SELECT a.ok, a.reply, a.target, a.duration_ms FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
       WHERE d.message_id = ? ORDER BY a.id`,
    )
    .all(messageId);
}

export function counter(db: Database, metric: string): number {
  const row = db.query<{ n: number | null }, [string]>(`SELECT sum(n) AS n FROM daily_counters WHERE metric = ?`).get(metric);
  return row?.n ?? 0;
}

/** Polls until `check` returns true (or throws after `timeoutMs`). */
export async function waitFor(check: () => boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

// ---- scripted relay ----------------------------------------------------------------------

/** "stall": never answers the end of DATA; "stall-mail": never answers MAIL FROM (nothing sent yet). */
export type RelayMode = "ok" | "tempfail" | "permfail" | "drop" | "stall" | "stall-mail";

export interface ReceivedMessage {
  from: string;
  to: string[];
  data: Buffer;
  secure: boolean;
  user: string | undefined;
  /** MAIL FROM's BODY= parameter (8BITMIME), if any. */
  body: string | undefined;
  /** MAIL FROM's SIZE= parameter, if any. */
  size: string | undefined;
  /** MAIL FROM carried SMTPUTF8. */
  smtpUtf8: boolean;
}

export interface ScriptedRelay {
  port: number;
  received: ReceivedMessage[];
  /** Every AUTH attempt the relay saw (user, whether the session was under TLS). */
  authAttempts: { user: string; password: string; secure: boolean }[];
  /** The password AUTH takes (a test may change it: the account's password reset at the provider). */
  password: string;
  connections: number;
  /** MAIL FROM commands that reached the relay (accepted or not). */
  mailFroms: string[];
  /** Messages whose end of DATA arrived in mode "stall" (and are never answered). */
  stalled: number;
  /** Answer 451 to this many DATA commands before accepting. */
  tempFailures: number;
  /** RCPT TO these addresses gets 550 5.1.1 (the others are accepted). */
  refuseRecipients: string[];
  /**
   * RCPT TO an address listed here gets 450 4.2.1 (mailbox busy, try later) while its count is
   * above 0; each 450 takes one off (Infinity: always). Other addresses are accepted.
   */
  deferRecipients: Map<string, number>;
  /** RCPT TO beyond this many in one transaction gets 452 4.5.3 (a provider's per-message cap). */
  maxRecipients: number;
  /** Answer the end of DATA (with 250) only after this many ms, as a relay scanning the message does. */
  dataReplyDelayMs: number;
  /** Drop the connection after the end of DATA, unanswered, for the messages this matches (a scanner crashing on one). */
  /** MAIL FROMs answered by closing the connection (a pooled one the relay let go of meanwhile). */
  dropMailFroms: number;
  dropWhen: ((data: Buffer) => boolean) | null;
  /** How many connections dropWhen cut. */
  dropped: number;
  mode: RelayMode;
  close(): Promise<void>;
}

export interface RelayOptions {
  user?: string;
  pass?: string;
  starttls?: boolean;
  /** TLS from the first byte (port 465 style, RELAY_SMTP_SECURE=tls) instead of STARTTLS. */
  implicitTls?: boolean;
  port?: number;
  /** Leave SMTPUTF8 out of the EHLO reply (smtp-server offers it by default). */
  hideSmtpUtf8?: boolean;
  /** Leave 8BITMIME out of the EHLO reply (smtp-server offers it by default). */
  hide8BitMime?: boolean;
  /** Announce SIZE with this limit and refuse bigger MAIL FROM SIZE= values (552). */
  sizeLimit?: number;
  /** The AUTH mechanisms offered (default PLAIN LOGIN); others are answered 504. */
  authMethods?: string[];
  /** Read the message data no faster than this (a slow link: TCP backpressure slows the sender). */
  readBytesPerSecond?: number;
}

/** A real smtp-server relay: STARTTLS (self-signed), AUTH required after TLS, scripted failures. */
export async function startRelay(opts: RelayOptions = {}): Promise<ScriptedRelay> {
  const user = opts.user ?? "relayuser";
  const pass = opts.pass ?? "relaypass";
  const starttls = opts.starttls ?? true;
  const { key, cert } = selfSignedCert();
  const relay: ScriptedRelay = {
    port: 0,
    received: [],
    authAttempts: [],
    password: pass,
    connections: 0,
    mailFroms: [],
    stalled: 0,
    tempFailures: 0,
    refuseRecipients: [],
    deferRecipients: new Map(),
    maxRecipients: Infinity,
    dataReplyDelayMs: 0,
    dropMailFroms: 0,
    dropWhen: null,
    dropped: 0,
    mode: "ok",
    close: async () => undefined,
  };
  const sockets = new Set<Socket>();
  const serverOptions: SMTPServerOptions = {
    closeTimeout: 500,
    key,
    cert,
    logger: false,
    authMethods: opts.authMethods ?? ["PLAIN", "LOGIN"],
    secure: opts.implicitTls ?? false,
    disabledCommands: starttls ? [] : ["STARTTLS"],
    hideSTARTTLS: !starttls,
    allowInsecureAuth: !starttls,
    hideSMTPUTF8: opts.hideSmtpUtf8 ?? false,
    hide8BITMIME: opts.hide8BitMime ?? false,
    ...(opts.sizeLimit !== undefined ? { size: opts.sizeLimit } : {}),
    onConnect(_session, cb) {
      relay.connections++;
      cb();
    },
    onAuth(auth, session, cb) {
      relay.authAttempts.push({ user: auth.username ?? "", password: auth.password ?? "", secure: session.secure });
      if (auth.username === user && auth.password === relay.password) return cb(null, { user });
      const err = Object.assign(new Error("Authentication credentials invalid"), { responseCode: 535 });
      return cb(err);
    },
    onMailFrom(address, session, cb) {
      relay.mailFroms.push(address.address);
      if (relay.mode === "stall-mail") return; // never answer
      if (relay.dropMailFroms > 0) {
        relay.dropMailFroms--;
        for (const s of sockets) if (s.remotePort === session.remotePort) s.destroy();
        return;
      }
      if (!session.user) return cb(Object.assign(new Error("Authentication required"), { responseCode: 530 }));
      cb();
    },
    onRcptTo(address, session, cb) {
      if (session.envelope.rcptTo.length >= relay.maxRecipients) return cb(Object.assign(new Error("4.5.3 Too many recipients"), { responseCode: 452 }));
      if (relay.refuseRecipients.includes(address.address)) return cb(Object.assign(new Error("5.1.1 No such user here"), { responseCode: 550 }));
      const deferrals = relay.deferRecipients.get(address.address) ?? 0;
      if (deferrals > 0) {
        relay.deferRecipients.set(address.address, deferrals - 1);
        return cb(Object.assign(new Error("4.2.1 Mailbox busy, try again later"), { responseCode: 450 }));
      }
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      const rate = opts.readBytesPerSecond;
      stream.on("data", (c: Buffer) => {
        chunks.push(c);
        if (rate === undefined) return;
        stream.pause();
        setTimeout(() => stream.resume(), (c.length / rate) * 1000);
      });
      stream.on("end", () => {
        if (relay.mode === "stall") return void relay.stalled++; // never answer
        if (relay.mode === "drop" || relay.dropWhen?.(Buffer.concat(chunks))) {
          if (relay.mode !== "drop") relay.dropped++;
          for (const s of sockets) if (s.remotePort === session.remotePort) s.destroy();
          return;
        }
        if (relay.mode === "permfail") return cb(Object.assign(new Error("Mailbox unavailable"), { responseCode: 550 }));
        if (relay.tempFailures > 0 || relay.mode === "tempfail") {
          if (relay.tempFailures > 0) relay.tempFailures--;
          return cb(Object.assign(new Error("Try again later"), { responseCode: 451 }));
        }
        relay.received.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          to: session.envelope.rcptTo.map((r) => r.address),
          data: Buffer.concat(chunks),
          secure: session.secure,
          user: typeof session.user === "string" ? session.user : undefined,
          body: textArg(mailArgs(session).BODY),
          size: textArg(mailArgs(session).SIZE),
          smtpUtf8: mailArgs(session).SMTPUTF8 === true,
        });
        if (relay.dataReplyDelayMs > 0) setTimeout(() => cb(null, "Ok: queued"), relay.dataReplyDelayMs);
        else cb(null, "Ok: queued");
      });
    },
  };
  const server = new SMTPServer(serverOptions);
  server.on("error", () => undefined);
  server.server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, "127.0.0.1", () => resolve()));
  const address = server.server.address();
  relay.port = typeof address === "object" && address ? address.port : 0;
  let closed: Promise<void> | null = null;
  relay.close = () => {
    closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
    return closed;
  };
  return relay;
}

function mailArgs(session: SMTPServerSession): Record<string, string | true | undefined> {
  const from = session.envelope.mailFrom;
  return from && from.args ? (from.args as Record<string, string | true>) : {};
}

function textArg(v: string | true | undefined): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** Config variables for a relay started with startRelay. */
export function relayVars(relay: { port: number }, extra: Record<string, string> = {}): Record<string, string> {
  return {
    RELAY_SMTP_HOST: "127.0.0.1",
    RELAY_SMTP_PORT: String(relay.port),
    RELAY_SMTP_USER: "relayuser",
    RELAY_SMTP_PASS: "relaypass",
    RELAY_SMTP_SECURE: "starttls",
    RELAY_SMTP_TLS_VERIFY: "false",
    ...extra,
  };
}

/** Calls `onLine` with each CRLF-terminated line the socket receives (raw scripted SMTP peers). */
export function onLines(socket: Socket, onLine: (line: string) => void): void {
  let buffer = "";
  socket.on("data", (chunk: Buffer) => {
    buffer += chunk.toString("latin1");
    let nl: number;
    while ((nl = buffer.indexOf("\r\n")) !== -1) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 2);
      onLine(line);
    }
  });
}

// ---- raw capture relay ---------------------------------------------------------------------

export interface RawCapture {
  /** Commands seen outside DATA, in order. */
  commands: string[];
  /** Each DATA body as sent on the wire (dot-stuffed, without the final CRLF.CRLF). */
  bodies: Buffer[];
}

/** Minimal line-synchronous SMTP server (no PIPELINING, no TLS) that keeps the raw bytes. */
export function startRawRelay(): Promise<{ server: Server; port: number; capture: RawCapture }> {
  const capture: RawCapture = { commands: [], bodies: [] };
  const server = createServer((socket: Socket) => {
    let buf = Buffer.alloc(0);
    let inData = false;
    socket.write("220 raw.test ESMTP\r\n");
    socket.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (inData) {
          const end = buf.indexOf("\r\n.\r\n");
          if (end === -1) return;
          capture.bodies.push(buf.subarray(0, end));
          buf = buf.subarray(end + 5);
          inData = false;
          socket.write("250 2.0.0 accepted\r\n");
          continue;
        }
        const eol = buf.indexOf("\r\n");
        if (eol === -1) return;
        const line = buf.subarray(0, eol).toString("latin1");
        buf = buf.subarray(eol + 2);
        capture.commands.push(line);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === "EHLO") socket.write("250-raw.test\r\n250 8BITMIME\r\n");
        else if (verb === "DATA") {
          inData = true;
          socket.write("354 go ahead\r\n");
        } else if (verb === "QUIT") socket.end("221 bye\r\n");
        else socket.write("250 ok\r\n");
      }
    });
    socket.on("error", () => undefined);
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const a = server.address();
      resolve({ server, port: typeof a === "object" && a ? a.port : 0, capture });
    }),
  );
}

// ---- webhook receiver -------------------------------------------------------------------------

export interface WebhookReceiver {
  /** Bodies of the posts answered 200. */
  posts: string[];
  /** Posts whose body was read, answered or not: a stalled post counts once it is under way. */
  taken: number;
  url: string;
  /** While true, a post is taken and never answered (a hanging receiver). */
  stall: boolean;
  stop(): void;
}

/** A Bun.serve webhook receiver on loopback that answers 200, or hangs while `stall` is set. */
export function startWebhookReceiver(opts: { stall?: boolean } = {}): WebhookReceiver {
  const posts: string[] = [];
  const receiver: WebhookReceiver = { posts, taken: 0, url: "", stall: opts.stall ?? false, stop: () => undefined };
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 0,
    async fetch(req) {
      const body = await req.text();
      receiver.taken++;
      if (receiver.stall) return new Promise<Response>(() => undefined);
      posts.push(body);
      return new Response("ok");
    },
  });
  receiver.url = `http://127.0.0.1:${server.port}/hook`;
  receiver.stop = () => void server.stop(true);
  return receiver;
}
