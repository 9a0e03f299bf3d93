/**
 * DATA goes into the spool file as it arrives (src/spool/incoming-file.ts), against the real
 * `mailgw serve` from source: a 25 MB message with a body rule is classified on its body and
 * archived byte for byte; a 25 MB message a body rule rejects leaves no file anywhere; a client
 * that disconnects mid-DATA leaves no `.tmp`; one over the size limit gets 552 and leaves no file
 * and no row; a `.tmp` left by kill -9 mid-DATA is removed by the restart's recovery (it was
 * never acknowledged).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { RawClient, greet } from "../smtp/helpers.ts";
import { archivedCopy, serveDir, startServe, until, type ServeProcess } from "../smtp/serve-process.ts";

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: body-spam, priority: 100, action: reject, category: spam, reject_message: "Body says spam", conditions: [{ field: body, operator: contains, value: "buy-cheap-pills-now" }] }
  - { name: body-invoice, priority: 50, action: archive, category: invoices, conditions: [{ field: body, operator: contains, value: "invoice-number-4711" }] }
`;
const BIG_BYTES = 25 * 1024 * 1024;
const ENV = { MAX_MESSAGE_SIZE_MB: "30", RATE_LIMIT_MAX: "1000" };

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
}, 60_000);

async function serveWithBodyRules(): Promise<ServeProcess> {
  const dir = serveDir();
  dirs.push(dir);
  await writeFile(join(dir, "rules.yaml"), RULES);
  return startServe("source", dir, ENV);
}

/** A plain-text message of `bytes` bytes (CRLF lines, none starting with a dot) with `marker` near the top. */
function bigMessage(bytes: number, subject: string, marker: string): Buffer {
  const head = `From: a@sender.example\r\nTo: b@company.com\r\nSubject: ${subject}\r\nContent-Type: text/plain\r\n\r\nHello, ${marker} here.\r\n`;
  const line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit 0123456789 abcdefghij\r\n";
  const body = line.repeat(Math.ceil((bytes - head.length) / line.length));
  return Buffer.from((head + body).slice(0, bytes - 2) + "\r\n", "latin1");
}

async function startData(c: RawClient): Promise<void> {
  expect(await greet(c)).toStartWith("250");
  expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
  expect(await c.cmd("RCPT TO:<b@company.com>")).toStartWith("250");
  expect(await c.cmd("DATA")).toStartWith("354");
}

async function send(port: number, message: Buffer): Promise<string> {
  const c = await RawClient.connect(port);
  await startData(c);
  c.write(message);
  c.write(".\r\n");
  const reply = await c.reply(60_000);
  c.socket.destroy();
  return reply;
}

async function spoolNames(serve: ServeProcess): Promise<string[]> {
  const entries = await readdir(join(serve.dir, "data", "spool"), { withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => e.name);
}

const archived = (serve: ServeProcess, id: string): Promise<Buffer | null> => archivedCopy(serve.dir, id);


/** Opens DATA, sends `bytes` of a message without the final dot, waits for its `.tmp` to appear. */
async function halfSent(serve: ServeProcess, bytes: number): Promise<{ client: RawClient; tmp: string }> {
  const client = await RawClient.connect(serve.smtpPort);
  await startData(client);
  client.write(bigMessage(bytes, "half", "nothing"));
  let tmp = "";
  await until("a .tmp spool file while DATA is still open", async () => {
    tmp = (await spoolNames(serve)).find((n) => n.endsWith(".tmp")) ?? "";
    return tmp !== "";
  });
  return { client, tmp };
}

describe("DATA streamed into the spool file", () => {
  test("25 MB with a body rule: classified on the body, archived byte for byte; a rejected one leaves no file", async () => {
    const serve = await serveWithBodyRules();
    try {
      const invoice = bigMessage(BIG_BYTES, "big invoice", "invoice-number-4711");
      const reply = await send(serve.smtpPort, invoice);
      const id = /^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1];
      expect(id, reply).toBeString();
      const session = await serve.waitForLog((l) => l.msg === "smtp session" && l.id === id);
      expect([session.rule, session.category, session.decision]).toEqual(["body-invoice", "invoices", "archive"]);
      let file: Buffer | null = null;
      await until("the archive copy", async () => (file = await archived(serve, id ?? "")) !== null, 20_000);
      const copy = file as unknown as Buffer;
      // Our Received: header (one field, folded), then exactly the bytes sent.
      expect(copy.subarray(0, 10).toString()).toBe("Received: ");
      const headerLength = copy.length - invoice.length;
      expect(headerLength).toBeGreaterThan(0);
      expect(headerLength).toBeLessThan(1000);
      expect(copy.subarray(headerLength - 2, headerLength).toString()).toBe("\r\n");
      expect(Buffer.compare(copy.subarray(headerLength), invoice)).toBe(0);

      const spam = await send(serve.smtpPort, bigMessage(BIG_BYTES, "big spam", "buy-cheap-pills-now"));
      expect(spam).toBe("550 5.7.1 Body says spam");
      await until("the spool released", async () => (await spoolNames(serve)).length === 0);
      expect(await spoolNames(serve)).toEqual([]);
    } finally {
      await serve.stop();
    }
  }, 90_000);

  test("200 KB (spilled, under the prefix limit): body rules read the body from the .tmp", async () => {
    const serve = await serveWithBodyRules();
    try {
      for (const bytes of [70_000, 200_000, 900_000]) {
        const reply = await send(serve.smtpPort, bigMessage(bytes, "mid invoice", "invoice-number-4711"));
        const id = /^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1];
        expect(id, reply).toBeString();
        const session = await serve.waitForLog((l) => l.msg === "smtp session" && l.id === id);
        expect([bytes, session.rule, session.category]).toEqual([bytes, "body-invoice", "invoices"]);
        expect(await send(serve.smtpPort, bigMessage(bytes, "mid spam", "buy-cheap-pills-now"))).toBe("550 5.7.1 Body says spam");
      }
    } finally {
      await serve.stop();
    }
  }, 60_000);

  test("200 KB (spilled): the loop check still reads every Received: header (51 → 554, 50 → 250)", async () => {
    const serve = await serveWithBodyRules();
    try {
      const hops = (n: number): Buffer => Buffer.from("Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n".repeat(n));
      const body = bigMessage(200_000, "many hops", "nothing");
      expect(await send(serve.smtpPort, Buffer.concat([hops(51), body]))).toMatch(/^554 5\.4\.6 /);
      expect(await send(serve.smtpPort, Buffer.concat([hops(50), body]))).toStartWith("250 2.0.0");
      await until("the spool released", async () => (await spoolNames(serve)).filter((n) => n.endsWith(".tmp")).length === 0);
    } finally {
      await serve.stop();
    }
  }, 60_000);

  test("over MAX_MESSAGE_SIZE_MB after spilling: 552 5.3.4, no file, no row; the session goes on", async () => {
    const dir = serveDir();
    dirs.push(dir);
    const serve = await startServe("source", dir, { MAX_MESSAGE_SIZE_MB: "1", RATE_LIMIT_MAX: "1000" });
    try {
      const client = await RawClient.connect(serve.smtpPort);
      await startData(client);
      client.write(bigMessage(3 * 1024 * 1024, "too big", "nothing"));
      client.write(".\r\n");
      expect(await client.reply(30_000)).toMatch(/^552 5\.3\.4 /);
      expect(await client.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
      expect(await client.cmd("RCPT TO:<b@company.com>")).toStartWith("250");
      expect(await client.cmd("DATA")).toStartWith("354");
      client.write(bigMessage(200_000, "fits", "nothing"));
      client.write(".\r\n");
      const reply = await client.reply(30_000);
      expect(reply).toMatch(/^250 2\.0\.0 Queued as \S+/);
      client.socket.destroy();
      const id = reply.split(" ").pop() ?? "";
      await until("the accepted one archived", async () => (await archived(serve, id)) !== null);
      await until("nothing left in the spool", async () => (await spoolNames(serve)).length === 0);
      const db = new Database(join(dir, "data", "mail-gateway.db"), { readonly: true });
      try {
        expect(db.query<{ id: string }, []>("SELECT id FROM messages").all().map((r) => r.id)).toEqual([id]);
      } finally {
        db.close();
      }
    } finally {
      await serve.stop();
    }
  }, 60_000);

  test("a client gone mid-DATA leaves no .tmp; the next message is accepted", async () => {
    const serve = await serveWithBodyRules();
    try {
      const { client, tmp } = await halfSent(serve, 3 * 1024 * 1024);
      expect(tmp).toMatch(/\.tmp$/);
      client.socket.destroy();
      await until("the .tmp removed", async () => (await spoolNames(serve)).length === 0);
      const reply = await send(serve.smtpPort, bigMessage(64 * 1024, "small", "invoice-number-4711"));
      expect(reply).toStartWith("250 2.0.0 Queued as");
    } finally {
      await serve.stop();
    }
  }, 60_000);

  test("kill -9 mid-DATA leaves a .tmp; the restart's recovery removes it", async () => {
    const serve = await serveWithBodyRules();
    const { client, tmp } = await halfSent(serve, 2 * 1024 * 1024);
    await serve.stop("SIGKILL");
    client.socket.destroy();
    expect(await spoolNames(serve)).toContain(tmp);
    const again = await startServe("source", serve.dir, ENV);
    try {
      const removed = await again.waitForLog((l) => l.msg === "removed unfinished spool write");
      expect(removed.file).toBe(tmp);
      expect(await spoolNames(again)).toEqual([]);
    } finally {
      await again.stop();
    }
  }, 60_000);
});
