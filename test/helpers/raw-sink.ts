/**
 * The world behind a smarthost, as a raw SMTP sink on loopback: it answers 250 to every command
 * and keeps the MAIL FROM line, the RCPT TO lines and the data bytes exactly as they came (dot
 * stuffing undone). Unlike the smtp-server capture (interop.ts) it judges no address, so what
 * a relay passes on (a quoted local part, an address it rewrote) is seen as the relay sent it.
 * Offers 8BITMIME and SMTPUTF8, so the relay never converts what it forwards here.
 */
import { createServer, type Server } from "node:net";

export interface Sunk {
  /** The MAIL command line as sent, e.g. `MAIL FROM:<a@b> SIZE=12`. */
  mail: string;
  rcpts: string[];
  data: Buffer;
}

export interface RawSink {
  sunk: Sunk[];
  close(): Promise<void>;
}

const EHLO = "250-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-PIPELINING\r\n250 SIZE 0\r\n";
const END_OF_DATA = Buffer.from("\r\n.\r\n");

export async function startRawSink(port: number): Promise<RawSink> {
  const sunk: Sunk[] = [];
  const server: Server = createServer((sock) => {
    let buf = Buffer.alloc(0);
    let inData = false;
    let cur: Sunk = { mail: "", rcpts: [], data: Buffer.alloc(0) };
    sock.on("error", () => {});
    sock.write("220 sink ESMTP\r\n");
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (inData) {
          // Data ends at CRLF.CRLF; the CRLF before the dot belongs to the message.
          const end = buf.subarray(0, 3).toString("latin1") === ".\r\n" ? -2 : buf.indexOf(END_OF_DATA);
          if (end === -1) return;
          const body = end === -2 ? "" : buf.subarray(0, end + 2).toString("latin1").replace(/^\./gm, "");
          cur.data = Buffer.from(body, "latin1");
          buf = buf.subarray(end === -2 ? 3 : end + END_OF_DATA.length);
          sunk.push(cur);
          cur = { mail: "", rcpts: [], data: Buffer.alloc(0) };
          inData = false;
          sock.write("250 2.0.0 sunk\r\n");
          continue;
        }
        const nl = buf.indexOf("\r\n");
        if (nl === -1) return;
        const line = buf.subarray(0, nl).toString("utf8");
        buf = buf.subarray(nl + 2);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === "MAIL") cur.mail = line;
        if (verb === "RCPT") cur.rcpts.push(line);
        if (verb === "DATA") inData = true;
        if (verb === "QUIT") return void sock.end("221 2.0.0 bye\r\n");
        sock.write(verb === "EHLO" ? EHLO : verb === "DATA" ? "354 go on\r\n" : "250 2.0.0 ok\r\n");
      }
    });
  });
  await new Promise<void>((ok) => server.listen(port, "127.0.0.1", ok));
  return { sunk, close: () => new Promise<void>((ok) => server.close(() => ok())) };
}

/** The address of a MAIL FROM line (`MAIL FROM:<x> …` → x). */
export const mailFromAddress = (line: string): string => /^MAIL FROM:<(.*)>(?: |$)/i.exec(line)?.[1] ?? line;
