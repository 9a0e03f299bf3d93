/**
 * Sessions that each send a long header section (1 MB of fields, no blank line yet) and then
 * stall in DATA: the real `mailgw serve` must not hold those header sections in memory while it
 * waits. It did (up to 1.15 MB a session: 450 such sessions took serve to ~650 MB); now a spilled
 * message keeps at most 64 KB of its start in memory and reads its header section back from the
 * spool file at the final dot. The rules still see a Subject written after the megabyte.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { RawClient, greet } from "../smtp/helpers.ts";
import { archivedCopy, serveDir, startServe } from "../smtp/serve-process.ts";

const SESSIONS = 150;
const PADDING = `X-Pad: ${"a".repeat(990)}\r\n`.repeat(1000);

const rssBytes = (pid: number): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) * 1024;

async function openData(port: number, i: number): Promise<RawClient> {
  const c = await RawClient.connect(port, "127.0.0.1", undefined, `127.0.${1 + (i % 50)}.${1 + Math.floor(i / 50)}`);
  await greet(c);
  for (const line of ["MAIL FROM:<a@sender.example>", "RCPT TO:<b@company.com>"]) expect(await c.cmd(line)).toMatch(/^250/);
  expect(await c.cmd("DATA")).toMatch(/^354/);
  return c;
}

test("150 sessions stalled after 1 MB of header fields: serve holds none of it, and a Subject after it still decides", async () => {
  const serve = await startServe("source", serveDir());
  const pid = serve.proc.pid;
  const clients: RawClient[] = [];
  try {
    const warm = await openData(serve.smtpPort, 0);
    warm.write(`Subject: warm-up\r\n${PADDING}\r\nhi\r\n.\r\n`);
    expect(await warm.reply(10_000)).toMatch(/^250 /);
    warm.end();
    const before = rssBytes(pid);
    clients.push(...(await Promise.all(Array.from({ length: SESSIONS }, (_, i) => openData(serve.smtpPort, i)))));
    await Promise.all(clients.map((c) => new Promise<void>((resolve) => c.socket.write(`From: a@sender.example\r\n${PADDING}`, () => resolve()))));
    // serve has read and written it all (its spool files hold 1 MB each), while the sessions stall.
    const samples: number[] = [];
    for (let i = 0; i < 50; i++) {
      await Bun.sleep(100);
      samples.push(rssBytes(pid));
    }
    const held = Math.min(...samples.slice(-10)) - before;
    console.log(`RSS before ${(before / 1e6).toFixed(1)} MB; while stalled: most ${(Math.max(...samples) / 1e6).toFixed(1)} MB, +${(held / 1e6).toFixed(1)} MB at the end`);
    // Before: +150 MB and more (1.15 MB a session, held until the final dot). Now what is left is
    // chunks that went to the spool files, not yet collected or given back to the system: +30-75
    // MB, more on a busy machine. The exact bound is in incoming-file.test.ts (prefixHeldBytes).
    expect(held).toBeLessThan(125e6);

    const replies = await Promise.all(
      clients.map((c, i) => {
        c.write(`Subject: ${i % 2 === 0 ? "[SPAM] " : ""}number ${i}\r\n\r\nbody ${i}\r\n.\r\n`);
        return c.reply(20_000);
      }),
    );
    expect(replies.filter((r, i) => i % 2 === 0 && r !== "550 5.7.1 Message rejected as spam")).toEqual([]);
    const accepted = replies.filter((r, i) => i % 2 === 1 && /^250 2\.0\.0 Queued as /.test(r));
    expect(accepted.length).toBe(SESSIONS / 2);
    const id = /Queued as <?([^\s>]+)/.exec(accepted[0] ?? "")?.[1] ?? "";
    const copy = (await archivedCopy(serve.dir, id))?.toString("latin1") ?? "";
    expect(copy).toContain(`From: a@sender.example\r\n${PADDING}Subject: number 1\r\n\r\nbody 1\r\n`);
  } finally {
    for (const c of clients) c.end();
    expect(await serve.stop("SIGTERM")).toBe(0);
  }
}, 90_000);
