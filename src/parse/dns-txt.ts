/**
 * TXT lookups on the wire: a UDP query to each of the system's name servers (node:dns
 * getServers(), i.e. /etc/resolv.conf) in turn, asked again over TCP when the answer comes
 * back truncated. Answers in node:dns's shape: one array per record, holding that record's
 * character-strings; errors carry node:dns's codes (ENOTFOUND, ENODATA, ESERVFAIL, ETIMEOUT…),
 * which mailauth maps to SPF/DKIM/DMARC results.
 *
 * Why not node:dns: Bun's resolve(name, "TXT") (oven-sh/bun#21370, still in 1.4.x) returns
 * each character-string of a record as a record of its own. A TXT record longer than 255
 * bytes is always sent as several strings (RFC 1035 §3.3.14, RFC 7208 §3.3), so every 2048-bit
 * DKIM key reached mailauth cut after 255 bytes (never a pass) and long SPF records lost their
 * tail. A, AAAA, MX and PTR answers are not affected and stay with node:dns.
 *
 * Each query has a socket of its own (and so its own random source port), so at most MAX_QUERIES_IN_FLIGHT are asked at once; the others wait their turn within their own
 * try's timeout. Unbounded, a name server that stopped answering held one socket per message
 * for the whole check: 68 SMTP sessions under a 200-file limit (each already holding its socket
 * and, at the end of DATA, its spool file) ran the process out of descriptors, and their
 * messages got 451.
 */
import { randomInt } from "node:crypto";
import { createSocket } from "node:dgram";
import { getServers } from "node:dns";
import { connect, isIPv6 } from "node:net";

export interface TxtLookupOptions {
  /** "ip" or "ip:port" / "[ip6]:port", as node:dns getServers() lists them; default the system's. */
  servers?: readonly string[];
  /** Wait for one server's answer; each server is asked up to twice (as c-ares does by default). */
  tryTimeoutMs?: number;
}

const TYPE_TXT = 16;
const CLASS_IN = 1;
const ROUNDS = 2;
const DEFAULT_TRY_TIMEOUT_MS = 2000;
/** Part of the descriptors limits.ts FILE_DESCRIPTOR_RESERVE keeps for everything but sessions. */
export const MAX_QUERIES_IN_FLIGHT = 32;
let inFlight = 0;
const waiting: (() => void)[] = [];

/**
 * `ask` once a socket may be opened, or "timeout" if none came free within `timeoutMs` (as if
 * the server had not answered: the next one is asked, then the next round).
 */
async function withQuerySlot<T>(timeoutMs: number, ask: () => Promise<T>): Promise<T | "timeout"> {
  if (inFlight >= MAX_QUERIES_IN_FLIGHT) {
    const turn = await new Promise<boolean>((resolve) => {
      const go = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        waiting.splice(waiting.indexOf(go), 1);
        resolve(false);
      }, timeoutMs);
      waiting.push(go);
    });
    if (!turn) return "timeout";
  } else inFlight++;
  try {
    return await ask();
  } finally {
    // The slot goes straight to the next waiter, if any (inFlight stays as it is).
    const next = waiting.shift();
    if (next) next();
    else inFlight--;
  }
}

const RCODE_ERRORS: Record<number, string> = { 1: "EFORMERR", 2: "ESERVFAIL", 4: "ENOTIMP", 5: "EREFUSED" };

function dnsError(code: string, name: string): Error {
  return Object.assign(new Error(`queryTxt ${code} ${name}`), { code, hostname: name });
}

/** The query: RD set, one question, no EDNS (an answer over 512 bytes comes truncated and is asked again over TCP). */
function encodeQuery(id: number, name: string): Buffer {
  const labels = name.split(".");
  if (labels.some((l) => l.length === 0 || Buffer.byteLength(l) > 63) || name.length > 253) throw dnsError("EBADNAME", name);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2);
  header.writeUInt16BE(1, 4);
  const qname = Buffer.concat([...labels.map((l) => { const b = Buffer.from(l); return Buffer.concat([Buffer.from([b.length]), b]); }), Buffer.from([0])]);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(TYPE_TXT, 0);
  tail.writeUInt16BE(CLASS_IN, 2);
  return Buffer.concat([header, qname, tail]);
}

/** Offset just past the (possibly compressed) name at `at`. */
function skipName(msg: Buffer, at: number): number {
  let p = at;
  for (;;) {
    if (p >= msg.length) throw new RangeError("name past the end");
    const len = msg[p] as number;
    if ((len & 0xc0) === 0xc0) return p + 2;
    if (len === 0) return p + 1;
    p += 1 + len;
  }
}

type Parsed = { truncated: true } | { truncated: false; rcode: number; records: string[][] };

/** null when `msg` is not the answer to `query` (another id or question: ignored, as a resolver does). */
function parseAnswer(msg: Buffer, query: Buffer): Parsed | null {
  if (msg.length < 12 || msg.readUInt16BE(0) !== query.readUInt16BE(0) || (msg.readUInt16BE(2) & 0x8000) === 0) return null;
  const flags = msg.readUInt16BE(2);
  const questionEnd = query.length;
  // The question echoed back; names compare case-insensitively (a server may change the case).
  const echoed = (bytes: Buffer) => bytes.toString("latin1").toLowerCase();
  if (msg.readUInt16BE(4) !== 1 || msg.length < questionEnd || echoed(msg.subarray(12, questionEnd)) !== echoed(query.subarray(12))) return null;
  if (flags & 0x0200) return { truncated: true };
  const rcode = flags & 0x000f;
  const records: string[][] = [];
  let p = questionEnd;
  for (let i = msg.readUInt16BE(6); i > 0; i--) {
    p = skipName(msg, p);
    if (p + 10 > msg.length) throw new RangeError("record past the end");
    const type = msg.readUInt16BE(p);
    const klass = msg.readUInt16BE(p + 2);
    const end = p + 10 + msg.readUInt16BE(p + 8);
    if (end > msg.length) throw new RangeError("record data past the end");
    if (type === TYPE_TXT && klass === CLASS_IN) {
      const strings: string[] = [];
      for (let s = p + 10; s < end; s += 1 + (msg[s] as number)) {
        // latin1, as node:dns decodes TXT data: mailauth refuses non-ASCII SPF records itself.
        strings.push(msg.subarray(s + 1, Math.min(end, s + 1 + (msg[s] as number))).toString("latin1"));
      }
      records.push(strings);
    }
    p = end;
  }
  return { truncated: false, rcode, records };
}

function hostPort(server: string): { host: string; port: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(server);
  if (bracketed) return { host: bracketed[1] as string, port: Number(bracketed[2] ?? 53) };
  if (isIPv6(server)) return { host: server, port: 53 };
  const [host = server, port = "53"] = server.split(":");
  return { host, port: Number(port) };
}

/**
 * The socket is connected to the server: the kernel then passes on only datagrams from that
 * address and port (RFC 5452 §9.1, as c-ares and every stub resolver check). Unconnected, an
 * answer from port 53 of any host was taken once its id and question matched: an off-path
 * attacker needed no spoofed source address (which egress filters stop) to feed mailauth an SPF,
 * DKIM key or DMARC record of their choosing. A port that refuses (ICMP) fails the try at once.
 */
function askUdp(query: Buffer, host: string, port: number, timeoutMs: number): Promise<Parsed | "timeout"> {
  return new Promise((resolve, reject) => {
    const socket = createSocket(isIPv6(host) ? "udp6" : "udp4");
    let done = false;
    const timer = setTimeout(() => finish(() => resolve("timeout")), timeoutMs);
    function finish(settle: () => void): void {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.close();
      settle();
    }
    socket.on("error", (err) => finish(() => reject(err)));
    socket.on("message", (msg) => {
      try {
        const parsed = parseAnswer(msg, query);
        if (parsed) finish(() => resolve(parsed));
      } catch (err) {
        finish(() => reject(err));
      }
    });
    socket.connect(port, host, () => {
      if (!done) socket.send(query);
    });
  });
}

function askTcp(query: Buffer, host: string, port: number, timeoutMs: number): Promise<Parsed | "timeout"> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let buffered = Buffer.alloc(0);
    const timer = setTimeout(() => finish(() => resolve("timeout")), timeoutMs);
    function finish(settle: () => void): void {
      clearTimeout(timer);
      socket.destroy();
      settle();
    }
    socket.on("error", (err) => finish(() => reject(err)));
    socket.on("connect", () => {
      const length = Buffer.alloc(2);
      length.writeUInt16BE(query.length, 0);
      socket.write(Buffer.concat([length, query]));
    });
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < 2 || buffered.length < 2 + buffered.readUInt16BE(0)) return;
      try {
        const parsed = parseAnswer(buffered.subarray(2, 2 + buffered.readUInt16BE(0)), query);
        finish(parsed ? () => resolve(parsed) : () => reject(new RangeError("TCP answer to another query")));
      } catch (err) {
        finish(() => reject(err));
      }
    });
    socket.on("end", () => finish(() => reject(new RangeError("connection closed before the answer"))));
  });
}

/** The TXT records of `name`, one array of character-strings per record (node:dns `resolveTxt` shape). */
export async function resolveTxt(name: string, options: TxtLookupOptions = {}): Promise<string[][]> {
  const domain = name.replace(/\.$/, "");
  const servers = (options.servers ?? getServers()).map(hostPort);
  const tryTimeoutMs = options.tryTimeoutMs ?? DEFAULT_TRY_TIMEOUT_MS;
  // What the last server said when none gave an answer: a server that fails or is silent
  // is skipped for the next one, as c-ares does.
  let lastError = "ETIMEOUT";
  for (let round = 0; round < ROUNDS; round++) {
    for (const { host, port } of servers) {
      const query = encodeQuery(randomInt(0x10000), domain);
      let answer: Parsed | "timeout";
      try {
        answer = await withQuerySlot(tryTimeoutMs, async () => {
          const udp = await askUdp(query, host, port, tryTimeoutMs);
          return udp !== "timeout" && udp.truncated ? askTcp(query, host, port, tryTimeoutMs) : udp;
        });
      } catch (err) {
        lastError = err instanceof RangeError ? "EBADRESP" : "ECONNREFUSED";
        continue;
      }
      if (answer === "timeout") continue;
      if (answer.truncated) {
        lastError = "EBADRESP";
        continue;
      }
      if (answer.rcode === 3) throw dnsError("ENOTFOUND", domain);
      if (answer.rcode !== 0) {
        lastError = RCODE_ERRORS[answer.rcode] ?? "EBADRESP";
        continue;
      }
      if (answer.records.length === 0) throw dnsError("ENODATA", domain);
      return answer.records;
    }
  }
  throw dnsError(lastError, domain);
}
