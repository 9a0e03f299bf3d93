/**
 * Seeded random PROXY protocol headers (v1 text, v2 binary; valid ones and mutated ones) in
 * random TCP chunks, followed by a pipelined EHLO/QUIT, against the real `mailgw serve` with
 * SMTP_PROXY_PROTOCOL=true. A valid header gets the SMTP session, whose log line names the
 * client address the header carried; anything else closes the connection; every exchange
 * ends within the PROXY header timeout, replies are well-formed and serve stays up.
 */
import { afterAll, expect, test } from "bun:test";
import { seeded } from "../helpers/seeded.ts";
import { openClient, pick, replyProblems, type Rand } from "../helpers/smtp-fuzz.ts";
import { startServe, serveDir, type ServeProcess } from "../smtp/serve-process.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 7);
const SESSIONS = 240;
const SIGNATURE = Buffer.from("0d0a0d0a000d0a515549540a", "hex");

const serves: ServeProcess[] = [];
afterAll(async () => {
  for (const s of serves) if (s.proc.exitCode === null) await s.stop("SIGKILL");
}, 30_000);

interface Header {
  bytes: Buffer;
  /** The client address serve must use; undefined: the header is not known to be valid. */
  client?: string;
}

function v1(rand: Rand): Header {
  const n = () => Math.floor(rand() * 256);
  const src = `${1 + (n() % 223)}.${n()}.${n()}.${n()}`;
  if (rand() < 0.3) return { bytes: Buffer.from(`PROXY TCP6 2001:db8::${n().toString(16)} 2001:db8::1 ${n()} 25\r\n`), client: undefined };
  if (rand() < 0.1) return { bytes: Buffer.from("PROXY UNKNOWN\r\n"), client: "127.0.0.1" };
  return { bytes: Buffer.from(`PROXY TCP4 ${src} 10.0.0.1 ${1 + n()} 25\r\n`), client: src };
}

function v2(rand: Rand): Header {
  const n = () => Math.floor(rand() * 256);
  if (rand() < 0.15) return { bytes: Buffer.concat([SIGNATURE, Buffer.from([0x20, 0x00, 0, 0])]), client: "127.0.0.1" };
  const addr = [1 + (n() % 223), n(), n(), n()];
  const tlvs = rand() < 0.4 ? Buffer.from([0x04, 0x00, 0x03, 1, 2, 3]) : Buffer.alloc(0);
  const body = Buffer.concat([Buffer.from([...addr, 10, 0, 0, 1, n(), n(), 0, 25]), tlvs]);
  const head = Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x11, body.length >> 8, body.length & 0xff])]);
  return { bytes: Buffer.concat([head, body]), client: addr.join(".") };
}

/** Flips, truncates, lengthens or replaces bytes: the result may or may not still be valid. */
function mutate(rand: Rand, h: Header): Header {
  const b = Buffer.from(h.bytes);
  const r = rand();
  if (r < 0.3) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
  else if (r < 0.5) return { bytes: b.subarray(0, Math.floor(rand() * b.length)) };
  else if (r < 0.65) return { bytes: Buffer.concat([b.subarray(0, b.length - 2), Buffer.from(pick(rand, ["\n", " x\r\n", "\r\r\n", "\0\r\n"]))]) };
  else if (r < 0.8 && b[0] === 0x0d) b.writeUInt16BE(Math.floor(rand() * 2000), 14);
  else return { bytes: Buffer.from(pick(rand, ["EHLO x\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", `PROXY ${"x".repeat(200)}\r\n`, "GET / HTTP/1.0\r\n\r\n", "\r\n"])) };
  return { bytes: b };
}

async function session(port: number, rand: Rand): Promise<{ problems: string[]; client?: string; helo: string }> {
  const base = rand() < 0.5 ? v1(rand) : v2(rand);
  const h = rand() < 0.5 ? base : mutate(rand, base);
  const c = await openClient(port);
  for (let at = 0; at < h.bytes.length; ) {
    const size = 1 + Math.floor(rand() * (rand() < 0.5 ? 4 : h.bytes.length));
    c.socket.write(h.bytes.subarray(at, at + size));
    at += size;
    if (rand() < 0.5) await Bun.sleep(1);
  }
  // The client speaks after the banner (before it, smtp-server's early-talker check answers 421).
  const helo = `p${Math.floor(rand() * 1e9)}.example`;
  if ((await c.reply(6000))?.startsWith("220")) c.socket.write(`EHLO ${helo}\r\nQUIT\r\n`);
  const problems: string[] = [];
  // The header timeout is 5 s; an incomplete header is closed by then.
  if (!(await c.closedWithin(8000))) problems.push(`not closed: ${JSON.stringify(h.bytes.toString("latin1"))}`);
  problems.push(...(c.raw ? replyProblems(c.raw) : []));
  if (h.client !== undefined && !/^220 [^]*250[ -][^]*221 /.test(c.raw)) problems.push(`valid header ${JSON.stringify(h.bytes.toString("latin1"))} got ${JSON.stringify(c.raw.slice(0, 200))}`);
  c.socket.destroy();
  return { problems, client: h.client, helo };
}

test(`random PROXY headers in random chunks (seed ${SEED}): sessions for valid ones, closed otherwise, serve stays up`, async () => {
  const serve = await startServe("source", serveDir(), { SMTP_PROXY_PROTOCOL: "true", RATE_LIMIT_MAX: "100000" });
  serves.push(serve);
  const problems: string[] = [];
  const valid: { n: number; client: string; helo: string }[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < SESSIONS) {
      const n = next++;
      const r = await session(serve.smtpPort, seeded(SEED * 9_000_011 + n));
      problems.push(...r.problems.map((p) => `proxy ${SEED}-${n}: ${p}`));
      if (r.client !== undefined) valid.push({ n, client: r.client, helo: r.helo });
    }
  };
  await Promise.all(Array.from({ length: 24 }, worker));
  expect(serve.proc.exitCode).toBeNull();
  // The session line names the address the header carried. (LOCAL/UNKNOWN sessions are the
  // proxy's own health checks, logged at debug level: not looked for.)
  for (const v of valid.filter((x) => x.client !== "127.0.0.1")) {
    const line = await serve.waitForLog((l) => l.msg === "smtp session" && l.helo === v.helo, 5000).catch(() => null);
    if (line?.client !== v.client) problems.push(`proxy ${SEED}-${v.n}: session line ${JSON.stringify(line)} for client ${v.client}`);
  }
  // Still serves a well-formed header.
  const ok = await session(serve.smtpPort, () => 0.01);
  problems.push(...ok.problems);
  problems.push(...serve.logs.filter((l) => l.level === "error" || l.level === "fatal").slice(0, 5).map((l) => `error log: ${JSON.stringify(l).slice(0, 300)}`));
  expect(problems.slice(0, 20)).toEqual([]);
  expect(await serve.stop()).toBe(0);
}, 120_000);
