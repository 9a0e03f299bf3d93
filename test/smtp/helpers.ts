/**
 * Test helpers for the SMTP listener: a real file-writing MessageSink, a server started on
 * 127.0.0.1 port 0 with a temp dir, a raw SMTP client over node:net / node:tls, and a
 * self-signed certificate made with openssl. No mocks: real sockets, real files.
 */
import { expect } from "bun:test";
import { execFileSync } from "node:child_process";
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, writeFileSync, writeSync } from "node:fs";
import { connect as netConnect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from "node:tls";
import { loadConfig, type Config } from "../../src/config/config.ts";
import { SmtpError } from "../../src/errors.ts";
import type { Logger, LogFields } from "../../src/log/logger.ts";
import { createSmtpServer, type SmtpServerHandle } from "../../src/smtp/server.ts";
import type { SmtpLimits } from "../../src/smtp/limits.ts";
import type { SessionSummary } from "../../src/smtp/session-log.ts";
import type { RefusalReason } from "../../src/smtp/refusals.ts";
import type { Decision, Envelope, MessageSink, ReceiveOutcome } from "../../src/types.ts";

export interface StoredMessage {
  id: string;
  raw: Buffer;
  envelope: Envelope;
}

/** A sink that fsyncs each message to a file; rejects `[SPAM]` subjects, fails on `[FAIL]`. */
export function fileSink(dir: string): MessageSink & { messages: StoredMessage[] } {
  const messages: StoredMessage[] = [];
  let n = 0;
  return {
    messages,
    async receive(raw: Uint8Array, envelope: Envelope): Promise<ReceiveOutcome> {
      const text = Buffer.from(raw).toString("latin1");
      if (/^Subject: \[SPAM\]/m.test(text)) throw new SmtpError(550, "5.7.1", "Message rejected as spam");
      if (/^Subject: \[FAIL\]/m.test(text)) throw new Error("disk on fire at /secret/path");
      const id = `t${++n}`;
      const fd = openSync(join(dir, `${id}.eml`), "w");
      writeSync(fd, raw);
      fsyncSync(fd);
      closeSync(fd);
      messages.push({ id, raw: Buffer.from(raw), envelope });
      const decision: Decision = { rule: null, category: "default", action: "archive", forwardTo: [], url: null, rejectMessage: null, archive: true };
      return { id, decision };
    },
  };
}

export function tempDir(prefix = "mailgw-smtp-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface CapturedLog {
  level: string;
  msg: string;
  fields: LogFields;
}

export function captureLogger(): Logger & { lines: CapturedLog[] } {
  const lines: CapturedLog[] = [];
  const at = (level: string) => (msg: string, fields: LogFields = {}) => void lines.push({ level, msg, fields });
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

export interface TestServer {
  port: number;
  handle: SmtpServerHandle;
  sink: ReturnType<typeof fileSink>;
  logs: ReturnType<typeof captureLogger>;
  sessions: SessionSummary[];
  /** Every refusal reason reported (onRefusal), in order. */
  refusals: RefusalReason[];
  config: Config;
  dir: string;
  close(): Promise<void>;
}

export async function startTestServer(
  opts: { env?: Record<string, string>; limits?: Partial<SmtpLimits>; domains?: string[]; host?: string; now?: () => number; roomFor?: (bytes: number) => boolean } = {},
): Promise<TestServer> {
  const dir = tempDir();
  const config = loadConfig({
    cwd: dir,
    env: { SMTP_HOST: opts.host ?? "127.0.0.1", SMTP_PORT: "0", SMTP_HOSTNAME: "mx.test", ...opts.env },
    envFile: join(dir, "none.env"),
  });
  const sink = fileSink(dir);
  const logs = captureLogger();
  const sessions: SessionSummary[] = [];
  const refusals: RefusalReason[] = [];
  const domains = opts.domains ?? ["company.com"];
  const handle = createSmtpServer({
    smtp: config.smtp,
    logger: logs,
    sink,
    domains: () => domains,
    limits: opts.limits,
    onSessionEnd: (s) => sessions.push(s),
    onRefusal: (r) => refusals.push(r),
    now: opts.now,
    ...(opts.roomFor ? { roomFor: opts.roomFor } : {}),
  });
  const { port } = await handle.listen();
  return { port, handle, sink, logs, sessions, refusals, config, dir, close: () => handle.close(200) };
}

/** A raw SMTP client: exact bytes out, whole replies in. */
export class RawClient {
  private buffer = "";
  private replies: string[] = [];
  private waiters: ((reply: string) => void)[] = [];
  closed = false;

  private constructor(public socket: Socket | TLSSocket) {
    this.attach(socket);
  }

  /**
   * `localAddress`: the source address to connect from (127.0.0.2 on Linux, to tell a client from a proxy).
   * `allowHalfOpen`: the server's close (FIN) does not close this side (a client that went silent).
   */
  static connect(port: number, host = "127.0.0.1", preface?: Buffer | string, localAddress?: string, allowHalfOpen = false): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ port, host, allowHalfOpen, ...(localAddress ? { localAddress } : {}) }, () => {
        if (preface !== undefined) socket.write(preface);
        resolve(new RawClient(socket));
      });
      socket.once("error", reject);
    });
  }

  private attach(socket: Socket | TLSSocket): void {
    socket.on("data", (d: Buffer) => this.onData(d.toString("latin1")));
    socket.on("close", () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w("");
    });
    socket.on("error", () => {});
  }

  private onData(text: string): void {
    this.buffer += text;
    for (;;) {
      const m = /^(?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n/.exec(this.buffer);
      if (!m) return;
      this.buffer = this.buffer.slice(m[0].length);
      const reply = m[0].trimEnd();
      const waiter = this.waiters.shift();
      if (waiter) waiter(reply);
      else this.replies.push(reply);
    }
  }

  /** Next complete reply ("" if the connection closed); rejects after `ms`. */
  reply(ms = 5000): Promise<string> {
    const ready = this.replies.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (this.closed) return Promise.resolve("");
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no SMTP reply within ${ms} ms`)), ms);
      this.waiters.push((r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  async cmd(line: string, ms?: number): Promise<string> {
    this.write(`${line}\r\n`);
    return this.reply(ms);
  }

  /** STARTTLS handshake on the same socket (after a 220 to STARTTLS); `options` e.g. pin a version or cipher. */
  async upgrade(options: ConnectionOptions = {}): Promise<void> {
    const plain = this.socket;
    plain.removeAllListeners("data");
    plain.removeAllListeners("close");
    const secure = await new Promise<TLSSocket>((resolve, reject) => {
      const s = tlsConnect({ socket: plain as Socket, rejectUnauthorized: false, servername: "localhost", ...options }, () => resolve(s));
      s.once("error", reject);
    });
    this.socket = secure;
    this.buffer = "";
    this.attach(secure);
  }

  /** Waits for the server to close the connection; true if it did within `ms`. */
  waitClose(ms = 5000): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.socket.once("close", () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  end(): void {
    this.socket.destroy();
  }
}

/** Greeting + EHLO; returns the EHLO reply. */
export async function greet(c: RawClient, helo = "client.example"): Promise<string> {
  const banner = await c.reply();
  if (!banner.startsWith("220")) throw new Error(`unexpected banner: ${banner}`);
  return c.cmd(`EHLO ${helo}`);
}

/** Self-signed key/cert for `localhost` in `dir` (openssl CLI). */
export function makeCert(dir: string, name = "cert"): { key: string; cert: string } {
  const key = join(dir, `${name}-key.pem`);
  const cert = join(dir, `${name}.pem`);
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"], { stdio: "ignore" });
  return { key, cert };
}

/** A self-signed certificate for localhost that expired on 2020-01-02 (openssl ca sets the dates). */
export function makeExpiredCert(dir: string): { key: string; cert: string } {
  const ca = join(dir, "expired-ca");
  mkdirSync(ca, { recursive: true });
  writeFileSync(join(ca, "index.txt"), "");
  writeFileSync(join(ca, "serial"), "01\n");
  writeFileSync(join(ca, "ca.cnf"), "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nserial = serial\nnew_certs_dir = .\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n");
  const key = join(dir, "expired-key.pem");
  const cert = join(dir, "expired.pem");
  const run = (args: string[]) => execFileSync("openssl", args, { stdio: "ignore", cwd: ca });
  run(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", "req.csr", "-subj", "/CN=localhost"]);
  run(["ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", key, "-in", "req.csr", "-out", cert, "-startdate", "20200101000000Z", "-enddate", "20200102000000Z"]);
  return { key, cert };
}

/**
 * A private CA (`ca.pem`) and a certificate it signed for localhost and 127.0.0.1, in `dir`: what
 * a company's internal services use, trusted only where the CA has been added.
 */
export function makeCaSignedCert(dir: string): { ca: string; key: string; cert: string } {
  const [ca, caKey, key, csr, cert, ext] = ["ca.pem", "ca-key.pem", "server-key.pem", "server.csr", "server.pem", "server.ext"].map((f) => join(dir, f)) as [string, string, string, string, string, string];
  const run = (args: string[]) => execFileSync("openssl", args, { stdio: "ignore" });
  run(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", caKey, "-out", ca, "-days", "2", "-subj", "/CN=mailgw test private CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  run(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost"]);
  writeFileSync(ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  run(["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", caKey, "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext]);
  return { ca, key, cert };
}

export function simpleMessage(subject = "hello", body = "Hi there.\r\n"): string {
  return `From: a@sender.example\r\nTo: b@company.com\r\nSubject: ${subject}\r\n\r\n${body}`;
}

/** The message followed by the end-of-data line. */
export function terminated(message: string): string {
  return message.endsWith("\r\n") ? `${message}.\r\n` : `${message}\r\n.\r\n`;
}

/** A complete transaction on an open, greeted connection; returns the final reply. */
export async function sendMail(c: RawClient, rcpt = "b@company.com", message = simpleMessage()): Promise<string> {
  const mail = await c.cmd("MAIL FROM:<a@sender.example>");
  if (!mail.startsWith("250")) return mail;
  const r = await c.cmd(`RCPT TO:<${rcpt}>`);
  if (!r.startsWith("250")) return r;
  const d = await c.cmd("DATA");
  if (!d.startsWith("354")) return d;
  c.write(terminated(message));
  return c.reply();
}

/** `n` transactions in a row on an open, greeted connection, each answered 250; their ids. */
export async function sendMany(c: RawClient, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const reply = await sendMail(c);
    expect(reply).toStartWith("250 2.0.0 Queued as ");
    ids.push(reply.split(" ").pop() ?? "");
  }
  return ids;
}

/** One message to b@company.com on a new connection; the id of its `250 2.0.0 Queued as`, or throws. */
export async function sendOne(port: number, subject: string): Promise<string> {
  const c = await RawClient.connect(port);
  await greet(c);
  const reply = await sendMail(c, "b@company.com", simpleMessage(subject));
  c.end();
  const id = /^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1];
  if (!id) throw new Error(`not accepted: ${reply}`);
  return id;
}
