/**
 * The client side of the proxy interoperability tests: SMTP clients that connect through a
 * proxy from a chosen loopback source address (so the address mailgw records can be told
 * from the proxy's), a 10 MB message over STARTTLS, and what `mailgw serve` stored for it
 * (database row, archived bytes).
 */
import { Database } from "bun:sqlite";
import { isIPv6 } from "node:net";
import { join } from "node:path";
import { findTool } from "../packaging/binary.ts";
import { RawClient, greet, sendMail } from "../smtp/helpers.ts";
import { archivedCopy, until } from "../smtp/serve-process.ts";

export const SWAKS = findTool("swaks");
/** swaks does STARTTLS only with Net::SSLeay (Debian: libnet-ssleay-perl). */
export const SWAKS_TLS = SWAKS !== null && Bun.spawnSync([SWAKS, "--support"]).stdout.toString().includes("TLS supported");

/** A client connected to the proxy's `port` from `source` (the proxy's address of the same family). */
export function viaProxy(port: number, source: string): Promise<RawClient> {
  return RawClient.connect(port, isIPv6(source) ? "::1" : "127.0.0.1", undefined, source);
}

/** Greets through the proxy from `source` and sends one message; returns the final reply. */
export async function mailFrom(port: number, source: string, subject = `from ${source}`): Promise<string> {
  const c = await viaProxy(port, source);
  try {
    await greet(c, `client-${source.replaceAll(/[.:]/g, "-")}.example`);
    return await sendMail(c, "b@company.com", `From: a@sender.example\r\nTo: b@company.com\r\nSubject: ${subject}\r\n\r\nHi.\r\n`);
  } finally {
    c.end();
  }
}

export function queuedId(reply: string): string {
  const id = /^250 2\.0\.0 Queued as (\S+)$/.exec(reply)?.[1];
  if (!id) throw new Error(`not queued: ${reply}`);
  return id;
}

export interface MessageRow {
  client_ip: string;
  tls: number;
  rule: string | null;
  category: string;
  size: number;
}

export function messageRow(serveDir: string, id: string): MessageRow | null {
  const db = new Database(join(serveDir, "data", "mail-gateway.db"), { readonly: true });
  try {
    return db.query<MessageRow, [string]>("SELECT client_ip, tls, rule, category, size FROM messages WHERE id = ?").get(id);
  } finally {
    db.close();
  }
}

export function messageCount(serveDir: string): number {
  const db = new Database(join(serveDir, "data", "mail-gateway.db"), { readonly: true });
  try {
    return db.query<{ n: number }, []>("SELECT count(*) AS n FROM messages").get()?.n ?? -1;
  } finally {
    db.close();
  }
}

/**
 * STARTTLS through the proxy from `source`, then a message of `mb` megabytes; resolves with
 * the id once the archived copy ends with exactly the bytes sent (after our Received header).
 */
export async function bigMessageOverTls(port: number, source: string, serveDir: string, mb = 10): Promise<string> {
  const c = await viaProxy(port, source);
  try {
    await greet(c);
    const starttls = await c.cmd("STARTTLS");
    if (!starttls.startsWith("220")) throw new Error(`STARTTLS: ${starttls}`);
    await c.upgrade();
    await c.cmd("EHLO big.example");
    const line = `${"0123456789abcdef".repeat(4)}\r\n`;
    const body = line.repeat(Math.ceil((mb * 1024 * 1024) / line.length));
    const message = `From: a@sender.example\r\nTo: b@company.com\r\nSubject: ${mb} MB via proxy\r\n\r\n${body}`;
    const id = queuedId(await sendMail(c, "b@company.com", message));
    let copy: Buffer | null = null;
    await until(`${id} archived`, async () => (copy = await archivedCopy(serveDir, id)) !== null, 10_000);
    const stored = copy ?? Buffer.alloc(0);
    const sent = Buffer.from(message, "latin1");
    const head = stored.subarray(0, stored.length - sent.length).toString("latin1");
    if (!head.startsWith("Received: ") || Buffer.compare(stored.subarray(stored.length - sent.length), sent) !== 0) {
      throw new Error(`${id}: archived copy (${stored.length} bytes) is not the ${sent.length} bytes sent`);
    }
    return id;
  } finally {
    c.end();
  }
}

/** swaks through the proxy from `source`, with STARTTLS when `tls`. */
export async function swaks(port: number, source: string, tls: boolean): Promise<{ code: number; out: string }> {
  const server = isIPv6(source) ? ["-6", "--server", "::1", "--port", String(port)] : ["-4", "--server", `127.0.0.1:${port}`];
  const args = [SWAKS ?? "swaks", ...server, "--local-interface", source, "--from", "a@sender.example", "--to", "b@company.com", "--header", "Subject: swaks via proxy"];
  const proc = Bun.spawn(tls ? [...args, "--tls"] : args, { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, out: out + err };
}
