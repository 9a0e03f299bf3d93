/**
 * Shared by the latency benchmarks (not a test): a minimal SMTP client that times one message
 * from the end of DATA to its final reply, a plain-text message of a given size, percentiles,
 * and waiting until a server listens. Loopback only.
 */
import { connect, type Socket } from "node:net";

/** Minimal SMTP client: one reply at a time (multi-line replies joined). */
export class Client {
  private buffer = "";
  private waiters: ((line: string) => void)[] = [];
  private constructor(private readonly socket: Socket) {
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      for (let i = this.buffer.indexOf("\r\n"); i >= 0; i = this.buffer.indexOf("\r\n")) {
        const line = this.buffer.slice(0, i);
        this.buffer = this.buffer.slice(i + 2);
        if (/^\d{3} /.test(line)) this.waiters.shift()?.(line);
      }
    });
  }
  static async open(port: number): Promise<Client> {
    const socket = connect(port, "127.0.0.1");
    socket.setNoDelay(true);
    const client = new Client(socket);
    await client.reply();
    await client.command("EHLO bench.example");
    return client;
  }
  reply(): Promise<string> {
    return new Promise((resolveReply) => this.waiters.push(resolveReply));
  }
  async command(line: string | Uint8Array): Promise<string> {
    const r = this.reply();
    this.socket.write(typeof line === "string" ? `${line}\r\n` : line);
    return r;
  }
  /** Sends one message; resolves with ms from the end of DATA to the final reply. */
  async send(body: Uint8Array): Promise<number> {
    await this.command("MAIL FROM:<bench@sender.org>");
    await this.command("RCPT TO:<inbox@company.com>");
    await this.command("DATA");
    const r = this.reply();
    this.socket.write(body);
    const t0 = performance.now();
    this.socket.write("\r\n.\r\n");
    const line = await r;
    if (!line.startsWith("250")) throw new Error(`not accepted: ${line}`);
    return performance.now() - t0;
  }
  close(): void {
    this.socket.end("QUIT\r\n");
  }
}

export function message(bytes: number, subject: string): Uint8Array {
  const head = `From: Bench <bench@sender.org>\r\nTo: inbox@company.com\r\nSubject: ${subject}\r\nContent-Type: text/plain\r\n\r\n`;
  const line = "The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuv\r\n";
  return new TextEncoder().encode(head + line.repeat(Math.ceil((bytes - head.length) / line.length)));
}

/** The p-th percentile (0..1) of `list`, as text with one decimal. */
export function pct(list: number[], p: number): string {
  const s = [...list].sort((a, b) => a - b);
  return (s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? 0).toFixed(1);
}

/** Resolves once something accepts connections on 127.0.0.1:`port` (tries for ~10 s). */
export async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((r) => connect(port, "127.0.0.1").on("connect", function (this: Socket) { this.destroy(); r(true); }).on("error", () => r(false)));
    if (ok) return;
    await Bun.sleep(100);
  }
}
