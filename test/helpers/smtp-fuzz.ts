/**
 * A seeded random SMTP session generator and runner for fuzzing the real `mailgw serve`: each
 * session is a random mix of valid and invalid commands (random case and parameters), pipelined
 * groups, DATA bodies with dot-stuffing, bare CR/LF, NUL, 8-bit bytes and long lines, sent in
 * random TCP chunks, and cut at random points. The runner records what the client saw (every
 * raw byte and the reply to each command) so the caller can check invariants against the spool,
 * the archive and the log. Everything derives from the seed, so a failure replays exactly.
 */
import { connect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";

export type Rand = () => number;

export const pick = <T>(rand: Rand, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const int = (rand: Rand, lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));

/** A message as the client means it (`content`) and how it goes on the wire (stuffed, terminated). */
export interface FuzzMessage {
  /** What the server must store after its Received header: the content, CRLF-terminated. */
  expected: Buffer;
  wire: Buffer;
}

/** One message the session sent; `reply` is null when the client left before the final reply. */
export interface SentMessage {
  expected: Buffer;
  reply: string | null;
  /** The final dot was written (a message cut earlier can never have been stored). */
  complete: boolean;
}

export interface SessionResult {
  label: string;
  helo: string | null;
  raw: string;
  exchanges: { out: string; reply: string }[];
  messages: SentMessage[];
  problems: string[];
}

function randomCase(rand: Rand, s: string): string {
  const mode = rand();
  if (mode < 0.6) return s;
  if (mode < 0.8) return s.toLowerCase();
  return [...s].map((c) => (rand() < 0.5 ? c.toLowerCase() : c.toUpperCase())).join("");
}

const LATIN1 = "latin1";
const b = (s: string): Buffer => Buffer.from(s, LATIN1);

function randomBodyLine(rand: Rand): string {
  const r = rand();
  if (r < 0.25) return pick(rand, ["hello world", "Lorem ipsum dolor", "x", "  indented", "\tTabbed", "a=b", "--boundary"]);
  if (r < 0.4) return pick(rand, [".", "..", "...", ".x", "..x", ". ", ".\r", ".\n_", "\r.", "\n_."]);
  if (r < 0.5) return "";
  if (r < 0.6) return String.fromCharCode(...Array.from({ length: int(rand, 1, 40) }, () => int(rand, 0x80, 0xff)));
  if (r < 0.65) return `nul\0inside\0`;
  if (r < 0.72) return pick(rand, ["bare\rcr", "bare\nlf", "\r", "\n", "cr-end\r", "lf-end\n", "\r\n.\r", "\n.\n", "\r.\r"]);
  if (r < 0.78) return "L".repeat(pick(rand, [998, 999, 1000, 5000, 70_000]));
  if (r < 0.85) return pick(rand, ["Subject: [SPAM] buy", "Received: from x by y", "Content-Type: multipart/mixed; boundary=q", "MIME-Version: 1.0"]);
  return `word${int(rand, 0, 9999)} ${"ü".repeat(int(rand, 0, 3))}`;
}

/**
 * A random message. Dots are stuffed only at the start of a CRLF line (RFC 5321 §4.5.2); a
 * bare LF is never followed by a dot, since smtp-server also unstuffs there and the client's
 * meaning would be ambiguous.
 */
export function randomMessage(rand: Rand, opts: { big?: number } = {}): FuzzMessage {
  const lines: string[] = [];
  if (rand() < 0.8) {
    lines.push("From: a@sender.example", "To: b@company.com", `Subject: ${pick(rand, ["fuzz", "[SPAM] x", "[DROP] y", "héllo", "", " folded", "=?utf-8?B?W1NQQU1d?=", "=?x?Q?broken"])}`);
    if (rand() < 0.5) lines.push(`Message-ID: <${int(rand, 0, 1e9)}@fuzz>`);
    lines.push("");
  }
  const n = int(rand, 0, 12);
  for (let i = 0; i < n; i++) lines.push(randomBodyLine(rand));
  if (rand() < 0.15) lines.unshift(...randomMime(rand));
  if (rand() < 0.04) lines.unshift(...Array.from({ length: int(rand, 45, 55) }, (_, i) => `${pick(rand, ["Received", "received", "RECEIVED ", "Received\t"])}: from h${i} by h${i + 1}`));
  if (opts.big) lines.push("B".repeat(opts.big));
  let content = lines.join("\r\n");
  if (rand() < 0.7 && content.length > 0) content += "\r\n";
  if (rand() < 0.05) content = pick(rand, ["", " starts with space\r\n", "\tstarts with tab\r\n", ".\r\n", "..\r\n", "\r\n"]);
  content = content.replace(/(?<!\r)\n\./g, "\n_.");
  const stuffed = content.replace(/^\./, "..").replace(/\r\n\./g, "\r\n..");
  const ended = content.length === 0 || content.endsWith("\r\n") ? content : `${content}\r\n`;
  const wire = content.length === 0 || content.endsWith("\r\n") ? `${stuffed}.\r\n` : `${stuffed}\r\n.\r\n`;
  return { expected: b(ended), wire: b(wire) };
}

/** A multipart header and parts, some broken (no end boundary, bad base64, nested rfc822, .exe names). */
function randomMime(rand: Rand): string[] {
  const bd = pick(rand, ["b1", "", "\"q q\"", "x".repeat(80)]);
  const out = ["MIME-Version: 1.0", `Content-Type: multipart/${pick(rand, ["mixed", "alternative", "x"])}; boundary=${bd}`, ""];
  const parts = int(rand, 0, 4);
  const name = (): string => pick(rand, ["a.exe", "b.txt", "c.EXE", "=?utf-8?Q?d.exe?=", "", "e.exe\0.txt"]);
  for (let i = 0; i < parts; i++) {
    out.push(`--${bd}`);
    const kind = rand();
    if (kind < 0.4) out.push("Content-Type: application/octet-stream", `Content-Disposition: attachment; filename="${name()}"`, "Content-Transfer-Encoding: base64", "", pick(rand, ["TVqQAAMAAAAEAAAA", "!!!not base64", "===", "QUJD\0"]));
    else if (kind < 0.6) out.push("Content-Type: message/rfc822", "", "Subject: inner", "Content-Type: multipart/mixed; boundary=in", "", "--in", `Content-Disposition: attachment; filename=${name()}`, "", "x");
    else if (kind < 0.8) out.push("Content-Type: text/html; charset=bogus", "Content-Transfer-Encoding: quoted-printable", "", "<p>=E9=XX=\r", "<script>");
    else out.push("Content-Type: text/plain; charset=utf-8", "", "plain part");
  }
  if (rand() < 0.6) out.push(`--${bd}--`);
  return out;
}

const RCPTS = ["b@company.com", "c@COMPANY.com", "x@other.example", "v%o@company.com", "@a:b@company.com", '"a@b"@company.com', "a@@company.com", "u@[127.0.0.1]", "", "postmaster", "ü@company.com"];
/** Recipients the fuzz rules route: archive (b), forward held without a relay (fwd), webhook to a closed port (hook). */
const LOCAL = ["b@company.com", "fwd@company.com", "hook@company.com"];
const MAIL_PARAMS = ["", " SIZE=100", " SIZE=999999999", " BODY=8BITMIME", " BODY=7BIT", " BODY=BINARYMIME", " SMTPUTF8", " FOO=bar", " SIZE=x", " =x", " AUTH=<>", " RET=HDRS"];
const MISC = ["RSET", "NOOP", "NOOP hi", "VRFY b@company.com", "EXPN list", "HELP", "HELP MAIL", "BDAT 10 LAST", "BDAT 0 LAST", "AUTH PLAIN AGFAYg==", "ETRN x", "TURN", "XCLIENT ADDR=1.2.3.4", "", "   ", "GARBAGE", "MAIL", "RCPT", "DATA x", "MAIL FROM:", "RCPT TO:", "HELO", "EHLO", "STARTTLS", "QUITX", "nul\0cmd", "8bit \xe9\xff", "MAIL FROM:<a@b> SIZE=1 SIZE=2"];

/** Sends bytes in random pieces (some split inside CRLF), with short pauses so they arrive apart. */
async function sendChunked(rand: Rand, socket: Socket, data: Buffer): Promise<void> {
  if (rand() < 0.4) {
    socket.write(data);
    return;
  }
  let at = 0;
  while (at < data.length) {
    const size = rand() < 0.5 ? int(rand, 1, 6) : int(rand, 1, Math.max(1, Math.min(data.length, 70_000)));
    socket.write(data.subarray(at, at + size));
    at += size;
    if (rand() < 0.5) await Bun.sleep(rand() < 0.8 ? 0 : 2);
  }
}

/** Checks one SMTP reply (possibly multiline): 3-digit code, same code on every line, CRLF ends. */
export function replyProblems(raw: string): string[] {
  const problems: string[] = [];
  const lines = raw.split("\r\n");
  if (lines.pop() !== "") problems.push(`reply data does not end with CRLF: ${JSON.stringify(raw.slice(-80))}`);
  let multi: string | null = null;
  for (const line of lines) {
    const m = /^([2-5]\d\d)([ -]|$)/.exec(line);
    if (!m || /[\r\n]/.test(line)) {
      problems.push(`malformed reply line: ${JSON.stringify(line.slice(0, 120))}`);
      continue;
    }
    if (multi !== null && m[1] !== multi) problems.push(`multiline reply changes code: ${JSON.stringify(line)}`);
    multi = m[2] === "-" ? m[1]! : null;
  }
  if (multi !== null) problems.push("multiline reply never ended");
  return problems;
}

/** A client that keeps every byte it read and hands out whole replies in order. */
class Client {
  raw = "";
  private buf = "";
  private replies: string[] = [];
  private waiter: (() => void) | null = null;
  closed = false;
  /** Bytes read after a 220 to STARTTLS and before the handshake: replies to commands that had to be discarded. */
  leaked = "";
  private upgrading = false;
  constructor(public socket: Socket) {
    socket.setNoDelay(true);
    this.attach(socket);
  }
  private attach(socket: Socket): void {
    socket.on("data", (d: Buffer) => {
      if (this.upgrading) {
        this.leaked += d.toString(LATIN1);
        return;
      }
      const t = d.toString(LATIN1);
      this.raw += t;
      this.buf += t;
      for (;;) {
        const m = /^(?:\d{3}-[^\n]*\n)*[^\n]*\n/.exec(this.buf);
        if (!m) break;
        this.buf = this.buf.slice(m[0].length);
        this.replies.push(m[0].trimEnd());
      }
      this.waiter?.();
    });
    socket.on("close", () => {
      this.closed = true;
      this.waiter?.();
    });
    socket.on("error", () => {});
  }
  /** STARTTLS handshake on the same socket; false if it failed. */
  async upgrade(): Promise<boolean> {
    const plain = this.socket;
    this.upgrading = true;
    plain.removeAllListeners("close");
    plain.on("close", () => {
      this.closed = true;
      this.waiter?.();
    });
    try {
      const secure = await new Promise<Socket>((resolve, reject) => {
        const t = tlsConnect({ socket: plain, rejectUnauthorized: false, servername: "localhost" }, () => resolve(t));
        t.once("error", reject);
      });
      plain.removeAllListeners("data");
      this.upgrading = false;
      this.socket = secure;
      this.buf = "";
      this.attach(secure);
      return true;
    } catch {
      return false;
    }
  }
  async closedWithin(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) await Bun.sleep(20);
    return this.closed;
  }
  /** The next reply, "" when the connection closed first, null on a timeout (the server stopped answering). */
  async reply(ms: number): Promise<string | null> {
    const deadline = Date.now() + ms;
    while (this.replies.length === 0) {
      if (this.closed) return "";
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiter = () => {
          clearTimeout(t);
          r();
        };
      });
      this.waiter = null;
    }
    return this.replies.shift()!;
  }
}

export function openClient(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: "127.0.0.1" }, () => resolve(new Client(s)));
    s.once("error", reject);
  });
}

/** Runs one random session; `label` names it (seed and number) in the helo and in problems. */
export async function runSession(port: number, rand: Rand, label: string, opts: { bigBytes: number; replyMs: number; tls?: boolean }): Promise<SessionResult> {
  const result: SessionResult = { label, helo: null, raw: "", exchanges: [], messages: [], problems: [] };
  const c = await openClient(port);
  const cutAt = rand() < 0.25 ? int(rand, 0, 12) : -1;
  let step = 0;
  const expectReply = async (out: string): Promise<string | null> => {
    const r = await c.reply(opts.replyMs);
    if (r === null) result.problems.push(`no reply within ${opts.replyMs} ms after ${JSON.stringify(out.slice(0, 100))}`);
    else result.exchanges.push({ out: out.slice(0, 200), reply: r });
    return r;
  };
  try {
    const banner = await expectReply("<connect>");
    if (banner === null || banner === "") return result;
    // 421 4.3.2: serve is stopping (SIGTERM).
    if (banner.startsWith("421 4.3.2 ")) return result;
    if (!banner.startsWith("220")) result.problems.push(`banner: ${banner}`);
    let ehlo = false;
    let secure = false;
    const ops = int(rand, 1, 10);
    for (let op = 0; op < ops && !c.closed; op++) {
      if (step++ === cutAt) {
        // Cut mid-command: part of a line, then gone.
        if (rand() < 0.5) c.socket.write(b(pick(rand, ["MAIL FROM:<a@", "RCPT TO:<b@company.com>\r", "EHLO x\r"])));
        return result;
      }
      const r = rand();
      if (r < 0.2 || (op === 0 && rand() < 0.7)) {
        const verb = rand() < 0.8 ? "EHLO" : "HELO";
        const name = rand() < 0.9 ? `${label}.example` : pick(rand, ["", "[127.0.0.1]", "bad name!", "\xe9"]);
        const line = `${randomCase(rand, verb)}${name ? ` ${name}` : ""}`;
        c.socket.write(b(`${line}\r\n`));
        const rep = await expectReply(line);
        if (rep?.startsWith("250")) {
          ehlo = verb === "EHLO";
          if (name === `${label}.example`) result.helo = name;
        }
      } else if (r < 0.45 && result.helo !== null) {
        if (!(await blast(c, rand, result, expectReply, opts))) return result;
      } else if (r < 0.7) {
        await transaction(c, rand, ehlo, result, expectReply, opts, rand() < 0.1);
      } else if (r < 0.78 && opts.tls && !secure) {
        // STARTTLS, sometimes with commands pipelined after it in the same write (to be discarded).
        const extra = rand() < 0.4 ? pick(rand, ["MAIL FROM:<inject@evil.example>\r\n", "RSET\r\nNOOP\r\n", "RCPT TO:<b@company.com>\r\nDATA\r\n"]) : "";
        c.socket.write(b(`${randomCase(rand, "STARTTLS")}\r\n${extra}`));
        const rep = await expectReply("STARTTLS");
        if (rep?.startsWith("220")) {
          const ok = await c.upgrade();
          if (c.leaked) result.problems.push(`plaintext after the 220 to STARTTLS: ${JSON.stringify(c.leaked.slice(0, 200))}`);
          if (!ok) {
            result.problems.push("TLS handshake failed");
            return result;
          }
          secure = true;
          ehlo = false;
          result.helo = null;
        }
      } else if (r < 0.95) {
        const line = pick(rand, MISC);
        c.socket.write(b(`${randomCase(rand, line)}${rand() < 0.9 ? "\r\n" : "\n"}`));
        // A STARTTLS the client does not follow with a handshake: nothing more can be said.
        if ((await expectReply(line))?.startsWith("220")) return result;
      } else {
        const line = `NOOP ${"z".repeat(pick(rand, [500, 17_000, 40_000]))}`;
        await sendChunked(rand, c.socket, b(`${line}\r\n`));
        await expectReply(line);
      }
    }
    if (!c.closed && rand() < 0.7) {
      c.socket.write(b(`${randomCase(rand, "QUIT")}\r\n`));
      const q = await expectReply("QUIT");
      if (q && !/^(221|421) /.test(q)) result.problems.push(`QUIT answered ${q}`);
    }
  } finally {
    result.raw = c.raw + c.leaked;
    c.socket.destroy();
  }
  return result;
}

/** MAIL, RCPTs, DATA (one write when pipelined), then the message after a 354. */
async function transaction(c: Client, rand: Rand, ehlo: boolean, result: SessionResult, expectReply: (out: string) => Promise<string | null>, opts: { bigBytes: number }, cut: boolean): Promise<void> {
  const lines: string[] = [];
  if (rand() < 0.9) lines.push(`${randomCase(rand, "MAIL FROM:")}<${pick(rand, ["a@sender.example", "", "a@sender.example", "ü@x.example"])}>${rand() < 0.5 ? pick(rand, MAIL_PARAMS) : ""}`);
  const nr = int(rand, 0, 4);
  for (let i = 0; i < nr; i++) lines.push(`${randomCase(rand, "RCPT TO:")}<${rand() < 0.6 ? pick(rand, LOCAL) : pick(rand, RCPTS)}>`);
  if (rand() < 0.02) for (let i = 0; i < 105; i++) lines.push(`RCPT TO:<m${i}@company.com>`);
  const withData = rand() < 0.85;
  if (withData) lines.push(randomCase(rand, "DATA"));
  const pipelined = ehlo && rand() < 0.6;
  const replies: (string | null)[] = [];
  if (pipelined) {
    await sendChunked(rand, c.socket, b(lines.map((l) => `${l}\r\n`).join("")));
    for (const l of lines) replies.push(await expectReply(l));
  } else {
    for (const l of lines) {
      await sendChunked(rand, c.socket, b(`${l}\r\n`));
      const rep = await expectReply(l);
      replies.push(rep);
      if (rep === null || rep === "") return;
    }
  }
  if (!withData || !replies.at(-1)?.startsWith("354")) return;
  const msg = randomMessage(rand, rand() < 0.03 ? { big: opts.bigBytes } : {});
  const sent: SentMessage = { expected: msg.expected, reply: null, complete: false };
  result.messages.push(sent);
  if (cut) {
    // Cut anywhere in the message, including inside the final CRLF.CRLF, or right after it.
    const at = int(rand, 0, msg.wire.length);
    await sendChunked(rand, c.socket, msg.wire.subarray(0, at));
    sent.complete = at === msg.wire.length;
    await Bun.sleep(int(rand, 0, 3));
    c.socket.destroy();
    return;
  }
  await sendChunked(rand, c.socket, msg.wire);
  sent.complete = true;
  const rep = await expectReply("<message>");
  sent.reply = rep === "" ? null : rep;
}

/**
 * Whole transactions in one write, as a pipelining bot sends them: RSET, MAIL, RCPT, DATA, the
 * message and its dot without waiting for the 354, one to three times, then maybe QUIT. False
 * when the replies no longer line up with the commands (the session is then ended).
 */
async function blast(c: Client, rand: Rand, result: SessionResult, expectReply: (out: string) => Promise<string | null>, opts: { bigBytes: number }): Promise<boolean> {
  const count = int(rand, 1, 3);
  const msgs = Array.from({ length: count }, () => randomMessage(rand, rand() < 0.03 ? { big: opts.bigBytes } : {}));
  const quit = rand() < 0.3;
  const parts: Buffer[] = [];
  for (const m of msgs) parts.push(b(`RSET\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<${pick(rand, LOCAL)}>\r\nDATA\r\n`), m.wire);
  if (quit) parts.push(b("QUIT\r\n"));
  const sent = msgs.map((m): SentMessage => ({ expected: m.expected, reply: null, complete: true }));
  result.messages.push(...sent);
  await sendChunked(rand, c.socket, Buffer.concat(parts));
  // Half-close (shutdown SHUT_WR) after the last command: every reply is still owed.
  const halfClosed = !quit && rand() < 0.3;
  if (halfClosed) c.socket.end();
  for (const [i, m] of sent.entries()) {
    const got = [await expectReply("RSET"), await expectReply("MAIL"), await expectReply("RCPT"), await expectReply("DATA")];
    if (got.some((g) => g === null || g === "")) return false;
    if (!got[0]!.startsWith("250") || !got[1]!.startsWith("250") || !got[2]!.startsWith("250") || !got[3]!.startsWith("354")) {
      result.problems.push(`blast ${i}: ${JSON.stringify(got)}`);
      return false;
    }
    const rep = await expectReply("<message>");
    if (rep === null || rep === "") return false;
    m.reply = rep;
  }
  if (halfClosed) {
    if (!(await c.closedWithin(5000))) result.problems.push("half-closed client: the server did not close after the last reply");
    return false;
  }
  if (quit) {
    const q = await expectReply("QUIT");
    if (q && !/^(221|421) /.test(q)) result.problems.push(`QUIT answered ${q}`);
    return false;
  }
  return true;
}
