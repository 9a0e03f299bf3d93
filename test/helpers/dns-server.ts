/**
 * A small authoritative DNS server (UDP and TCP) answering from a table, for tests that need
 * real DNS traffic: what a resolver library (c-ares inside Bun) does with slow answers,
 * SERVFAIL, truncated UDP replies (TC bit, retried over TCP) and big TXT records is only seen
 * on the wire. Names not in the table get NXDOMAIN; a name whose entry lacks the asked type
 * gets an empty NOERROR answer (NODATA), as a real server would.
 */
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, type Server, type Socket } from "node:net";

export interface DnsEntry {
  txt?: string[];
  a?: string[];
  aaaa?: string[];
  mx?: { preference: number; exchange: string }[];
  /** Answer after this many ms (UDP and TCP). */
  delayMs?: number;
  /** Never answer. */
  silent?: boolean;
  /** Answer with this RCODE and no records (2 = SERVFAIL, 5 = REFUSED). */
  rcode?: number;
  /** Over UDP, answer with the TC bit and no records, so the client must ask again over TCP. */
  truncateUdp?: boolean;
}

export interface DnsServer {
  host: string;
  port: number;
  /** Every question seen, as `name/TYPE` (lower-case name), over either transport. */
  queries: string[];
  close(): Promise<void>;
}

const TYPES: Record<number, string> = { 1: "A", 15: "MX", 16: "TXT", 28: "AAAA", 12: "PTR" };

function encodeName(name: string): Buffer {
  const labels = name.replace(/\.$/, "").split(".").filter((l) => l.length > 0);
  return Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, "ascii")])), Buffer.from([0])]);
}

function readName(msg: Buffer, offset: number): { name: string; end: number } {
  const labels: string[] = [];
  let at = offset;
  while (msg[at] !== 0) {
    const len = msg[at] as number;
    labels.push(msg.subarray(at + 1, at + 1 + len).toString("ascii"));
    at += 1 + len;
  }
  return { name: labels.join("."), end: at + 1 };
}

/** TXT rdata: each string cut into character-strings of at most 255 bytes. */
function txtData(text: string): Buffer {
  const bytes = Buffer.from(text, "utf8");
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length || i === 0; i += 255) {
    const chunk = bytes.subarray(i, i + 255);
    parts.push(Buffer.from([chunk.length]), chunk);
  }
  return Buffer.concat(parts);
}

function records(entry: DnsEntry, type: string): Buffer[] {
  switch (type) {
    case "TXT": return (entry.txt ?? []).map(txtData);
    case "A": return (entry.a ?? []).map((ip) => Buffer.from(ip.split(".").map(Number)));
    case "AAAA": return (entry.aaaa ?? []).map((ip) => {
      const [head = "", tail = ""] = ip.split("::");
      const h = head ? head.split(":") : [];
      const t = tail ? tail.split(":") : [];
      const groups = [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
      return Buffer.from(groups.flatMap((g) => { const n = parseInt(g, 16); return [n >> 8, n & 255]; }));
    });
    case "MX": return (entry.mx ?? []).map((mx) => Buffer.concat([Buffer.from([mx.preference >> 8, mx.preference & 255]), encodeName(mx.exchange)]));
    default: return [];
  }
}

function answer(query: Buffer, table: Record<string, DnsEntry>, udp: boolean): { reply: Buffer; entry?: DnsEntry; key: string } {
  const { name, end } = readName(query, 12);
  const qtype = query.readUInt16BE(end);
  const type = TYPES[qtype] ?? String(qtype);
  const key = `${name.toLowerCase()}/${type}`;
  const entry = table[name.toLowerCase()];
  const question = query.subarray(12, end + 4);
  const rcode = entry ? (entry.rcode ?? 0) : 3;
  let rdatas = entry && rcode === 0 ? records(entry, type) : [];
  let flags = 0x8400 | 0x0100 | 0x0080; // QR, AA, RD, RA
  if (udp && entry?.truncateUdp) {
    flags |= 0x0200;
    rdatas = [];
  }
  flags |= rcode;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  header.writeUInt16BE(flags, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(rdatas.length, 6);
  const rrs = rdatas.map((rdata) => {
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc00c, 0);
    rr.writeUInt16BE(qtype, 2);
    rr.writeUInt16BE(1, 4);
    rr.writeUInt32BE(60, 6);
    rr.writeUInt16BE(rdata.length, 10);
    return Buffer.concat([rr, rdata]);
  });
  return { reply: Buffer.concat([header, question, ...rrs]), entry, key };
}

/** Starts the server on `host` (UDP and TCP on the same port; port 0 picks one for both when free). */
export async function startDnsServer(table: Record<string, DnsEntry>, host = "127.0.0.1", port = 0): Promise<DnsServer> {
  const queries: string[] = [];
  const tcp: Server = createServer((socket: Socket) => {
    let buffered = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const query = buffered.subarray(2, 2 + buffered.readUInt16BE(0));
        buffered = buffered.subarray(2 + query.length);
        const { reply, entry, key } = answer(query, table, false);
        queries.push(key);
        if (entry?.silent) continue;
        const send = () => {
          if (socket.destroyed) return;
          const len = Buffer.alloc(2);
          len.writeUInt16BE(reply.length, 0);
          socket.write(Buffer.concat([len, reply]));
        };
        if (entry?.delayMs) setTimeout(send, entry.delayMs);
        else send();
      }
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(port, host, () => resolve());
  });
  const bound = (tcp.address() as { port: number }).port;
  const udp: UdpSocket = createSocket("udp4");
  udp.on("message", (query, rinfo) => {
    const { reply, entry, key } = answer(query, table, true);
    queries.push(key);
    if (entry?.silent) return;
    const send = () => udp.send(reply, rinfo.port, rinfo.address);
    if (entry?.delayMs) setTimeout(send, entry.delayMs);
    else send();
  });
  await new Promise<void>((resolve, reject) => {
    udp.once("error", reject);
    udp.bind(bound, host, () => resolve());
  });
  return {
    host,
    port: bound,
    queries,
    close: async () => {
      await new Promise<void>((resolve) => udp.close(() => resolve()));
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    },
  };
}
