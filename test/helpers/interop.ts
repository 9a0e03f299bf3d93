/**
 * What the interoperability tests with real MTAs (Postfix, Exim, OpenSMTPD) share, whichever
 * MTA they run: free ports in a suite's own range, a log file to poll, submitting a message
 * over plain SMTP, a capture server standing for the world behind a smarthost, the archived
 * copies of a message, `mailgw queue list`, and the header fields an MTA prepends.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { SMTPServer } from "smtp-server";
import { RawClient, greet } from "../smtp/helpers.ts";

/**
 * `n` distinct loopback ports in [min, max] that were free a moment ago. Each suite has a range
 * of its own, below 32768 where Linux never picks a port for a client socket or a listen(0)
 * (ip_local_port_range 32768–60999): `npm test` runs four files at once, and a port checked
 * free inside the ephemeral range was taken by another file's connection before serve bound it
 * (EADDRINUSE). Ranges: Postfix 21000–21999, nginx 22000–22999, Prometheus 23000–23499, webhook
 * interop 23500–23999, Exim inbound 24000–24499, Exim relay 24500–24999, OpenSMTPD 26000–26499,
 * hostile webhook 27000–27499, big webhook 28100–28199, HAProxy 29000–29499.
 */
export async function freePortsIn(n: number, min: number, max: number): Promise<number[]> {
  const found: number[] = [];
  const start = min + Math.floor(Math.random() * (max - min));
  for (let i = 0; i <= max - min && found.length < n; i++) {
    const port = min + ((start - min + i) % (max - min + 1));
    if (await canListen(port)) found.push(port);
  }
  if (found.length < n) throw new Error(`no ${n} free ports in ${min}-${max}`);
  return found;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** A log file an MTA appends to, read from byte offsets (`mark`) so each test sees its own lines. */
export interface LogWatch {
  /** Byte offset of the end of the log now (what `linesSince` starts from). */
  mark(): number;
  linesSince(mark: number): string[];
  /** Polls the log after `mark` for a line matching `re`; throws with the log's tail after `ms`. */
  waitForLog(re: RegExp, mark?: number, ms?: number): Promise<RegExpMatchArray>;
  tail(lines?: number): string;
}

export function watchLog(file: string, name: string): LogWatch {
  const read = (): Buffer => (existsSync(file) ? readFileSync(file) : Buffer.alloc(0));
  const linesSince = (mark: number): string[] => read().subarray(mark).toString("utf8").split("\n").filter((l) => l !== "");
  const tail = (n = 40): string => linesSince(0).slice(-n).join("\n");
  return {
    mark: () => read().length,
    linesSince,
    tail,
    async waitForLog(re, mark = 0, ms = 20_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        for (const line of linesSince(mark)) {
          const m = re.exec(line);
          if (m) return m;
        }
        if (Date.now() > deadline) throw new Error(`${name} log: no line matching ${re} within ${ms} ms; last lines:\n${tail(15)}`);
        await Bun.sleep(100);
      }
    },
  };
}

export const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Header fields of a UTF-8 text message sent as 8 bits (the inbound tests' bodies are). */
export const MIME_8BIT = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n";

/** A test message with a unique Message-ID and a Date, so no MTA adds either. */
export function testMessage(subject: string, body: string, opts: { from?: string; to?: string; headers?: string } = {}): Buffer {
  const id = `<${crypto.randomUUID()}@sender.example>`;
  return Buffer.from(
    `From: ${opts.from ?? "Alice <alice@sender.example>"}\r\nTo: ${opts.to ?? "bob@company.com"}\r\nSubject: ${subject}\r\n` +
      `Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: ${id}\r\n${opts.headers ?? ""}\r\n${body}`,
    "utf8",
  );
}

/** The message's unique `Message-ID:` line (how its copies are found again). */
export const messageIdLine = (raw: Buffer): string => /^Message-ID: .*$/m.exec(raw.toString("latin1"))?.[0] ?? raw.toString("latin1");

export interface Submission {
  raw: Buffer;
  rcpts: string[];
  from: string;
  /** MAIL FROM parameters, with their leading space (" BODY=8BITMIME"). */
  params?: string;
}

/** Submits one message over plain SMTP (dot-stuffed); returns the reply to the end of DATA. */
export async function submit(port: number, m: Submission, helo = "client.test"): Promise<string> {
  const c = await RawClient.connect(port);
  try {
    await greet(c, helo);
    const mail = await c.cmd(`MAIL FROM:<${m.from}>${m.params ?? ""}`);
    if (!mail.startsWith("250")) throw new Error(`MAIL refused: ${mail}`);
    for (const r of m.rcpts) {
      const reply = await c.cmd(`RCPT TO:<${r}>`);
      if (!reply.startsWith("250")) throw new Error(`RCPT ${r} refused: ${reply}`);
    }
    const data = await c.cmd("DATA");
    if (!data.startsWith("354")) throw new Error(`DATA refused: ${data}`);
    c.write(Buffer.concat([Buffer.from(m.raw.toString("latin1").replace(/^\./gm, ".."), "latin1"), Buffer.from(".\r\n")]));
    const reply = await c.reply(15_000);
    await c.cmd("QUIT").catch(() => "");
    return reply;
  } finally {
    c.end();
  }
}

/** The first `n` header fields (each with its folded lines) of a message, and the bytes after them. */
export function leadingFields(raw: Buffer, n: number): { fields: string[]; rest: Buffer } {
  const text = raw.toString("latin1");
  const fields: string[] = [];
  let at = 0;
  while (fields.length < n) {
    let end = text.indexOf("\r\n", at);
    while (text[end + 2] === " " || text[end + 2] === "\t") end = text.indexOf("\r\n", end + 2);
    fields.push(text.slice(at, end));
    at = end + 2;
  }
  return { fields, rest: raw.subarray(at) };
}

/** Every file under DATA_DIR/archive/<day>/. */
export function archiveFiles(dataDir: string): string[] {
  const root = join(dataDir, "archive");
  if (!existsSync(root)) return [];
  return readdirSync(root).flatMap((day) => readdirSync(join(root, day)).map((f) => join(root, day, f)));
}

/** Archived copies of a test message (found by its unique Message-ID line). */
export function archivedCopies(dataDir: string, raw: Buffer): Buffer[] {
  const line = messageIdLine(raw);
  return archiveFiles(dataDir).map((f) => readFileSync(f)).filter((b) => b.includes(line));
}

export interface Captured {
  from: string;
  to: string[];
  /** The BODY= parameter of MAIL FROM, if any. */
  body: string | undefined;
  data: Buffer;
}

/** A plain SMTP server on loopback that keeps what it is sent: the world behind a smarthost, or where bounces go. */
export interface Capture {
  /** The port it listens on (the one asked for, or the one the system chose for 0). */
  port: number;
  captured: Captured[];
  /** What arrived of a test message (found by its Message-ID line). */
  of(raw: Buffer): Captured[];
  close(): Promise<void>;
}

export async function startCapture(port: number, host = "127.0.0.1"): Promise<Capture> {
  const captured: Captured[] = [];
  const server = new SMTPServer({
    logger: false,
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        const { mailFrom, rcptTo } = session.envelope;
        const args = mailFrom ? (mailFrom.args as Record<string, string> | false) : false;
        captured.push({ from: mailFrom ? mailFrom.address : "", to: rcptTo.map((r) => r.address), body: args ? args.BODY : undefined, data: Buffer.concat(chunks) });
        cb();
      });
    },
  });
  await new Promise<void>((ok) => server.listen(port, host, ok));
  const address = server.server.address();
  if (address === null || typeof address === "string") throw new Error("the capture server has no port");
  return {
    port: address.port,
    captured,
    of: (raw) => captured.filter((c) => c.data.includes(messageIdLine(raw))),
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}

export { queueList, type QueueEntry } from "../smtp/serve-process.ts";

/** Polls `check` every 50 ms; throws naming `what` (and `context()`, e.g. an MTA log's tail) after `ms`. */
export async function waitUntil(what: string, check: () => boolean, ms = 20_000, context: () => string = () => ""): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${context()}`);
    await Bun.sleep(50);
  }
}

export const countMatching = (lines: string[], re: RegExp): number => lines.filter((l) => re.test(l)).length;
