/**
 * The SMTP client and the message mix of bench/soak.ts: a raw-socket client that binds a given
 * loopback source address (so the per-IP rate limit sees many clients), counts what the server
 * answered, and builds messages for the soak's rules. Not a test; loopback only.
 */
import { connect, type Socket } from "node:net";

export const counts = { accepted: 0, rejected: 0, rateLimited: 0, tempfail: 0, errors: 0, midData: 0, idle: 0, tls: 0 };
let ipSeq = 0;
/** A fresh loopback address per call: 127.2.0.1 … 127.2.255.254, then round again. */
export function freshIp(): string {
  ipSeq = (ipSeq + 1) % 65_000;
  return `127.2.${(ipSeq >> 8) & 255}.${(ipSeq & 255) || 1}`;
}

export class Client {
  private sock!: Socket;
  private buf = "";
  private waiter: ((r: string) => void) | null = null;
  private failer: ((e: Error) => void) | null = null;
  private lines: string[] = [];
  closed = false;
  static async open(port: number, localAddress: string): Promise<Client> {
    const c = new Client();
    await new Promise<void>((res, rej) => {
      c.sock = connect({ host: "127.0.0.1", port, localAddress }, () => res());
      c.sock.on("error", (e) => { c.closed = true; rej(e); c.failer?.(e); });
      c.sock.on("close", () => { c.closed = true; c.failer?.(new Error("closed")); });
      c.sock.on("data", (d) => c.onData(d.toString("latin1")));
    });
    c.sock.setTimeout(180_000, () => c.sock.destroy());
    await c.reply();
    return c;
  }
  private onData(s: string): void {
    this.buf += s;
    let i: number;
    while ((i = this.buf.indexOf("\r\n")) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 2);
      this.lines.push(line);
      if (line[3] !== "-") {
        const r = this.lines.join("\n");
        this.lines = [];
        const w = this.waiter;
        this.waiter = null; this.failer = null;
        w?.(r);
      }
    }
  }
  reply(): Promise<string> {
    return new Promise((res, rej) => {
      if (this.closed) return rej(new Error("closed"));
      this.waiter = res; this.failer = rej;
    });
  }
  cmd(line: string): Promise<string> {
    const p = this.reply();
    this.sock.write(line + "\r\n");
    return p;
  }
  write(data: string): void { this.sock.write(data); }
  destroy(): void { this.sock.destroy(); }
  async send(subject: string, size: number): Promise<string> {
    const m = await this.cmd("MAIL FROM:<sender@soak.example>");
    if (m.startsWith("451")) { counts.rateLimited++; await this.cmd("RSET"); return m; }
    if (!m.startsWith("250")) throw new Error(`MAIL: ${m}`);
    const r = await this.cmd("RCPT TO:<user@company.com>");
    if (!r.startsWith("250")) throw new Error(`RCPT: ${r}`);
    const d = await this.cmd("DATA");
    if (!d.startsWith("354")) throw new Error(`DATA: ${d}`);
    const p = this.reply();
    this.sock.write(message(subject, size) + ".\r\n");
    const res = await p;
    if (res.startsWith("250")) counts.accepted++;
    else if (res.startsWith("550")) counts.rejected++;
    else counts.tempfail++;
    return res;
  }
}

export const line = "abcdefghijklmnopqrstuvwxyz0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ the quick brown fox\r\n";
export function message(subject: string, size: number): string {
  const head = `From: Sender <sender@soak.example>\r\nTo: user@company.com\r\nSubject: ${subject}\r\n` +
    `Message-ID: <${Date.now()}.${Math.random()}@soak.example>\r\nDate: ${new Date().toUTCString()}\r\n\r\n`;
  return head + line.repeat(Math.max(1, Math.floor(size / line.length)));
}
/** 40% archive, 25% forward, 15% webhook, 10% reject, 10% drop; sizes 1–20 KB, 1 in 50 ~200 KB. */
export function pick(): { subject: string; size: number } {
  const x = Math.random();
  const subject = x < 0.4 ? "hello" : x < 0.65 ? "fwd report" : x < 0.8 ? "hook order" : x < 0.9 ? "[SPAM] buy" : "noise ping";
  const size = Math.random() < 0.02 ? 200_000 : 1000 + Math.floor(Math.random() * 19_000);
  return { subject, size };
}

