/**
 * The webhook's idle watch (webhook.ts idleTimeoutMs) counts the reply as progress: a receiver
 * that has taken the whole post and is sending its answer is not cut for "no progress" while the
 * answer still comes, within the deadline the message's size gives.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { silentLogger } from "../../src/log/logger.ts";
import { createDeliveryWorker, LARGE_MESSAGE_BYTES } from "../../src/queue/worker.ts";
import { attemptsOf, deliveryOf, makeEnv, seedDelivery, waitFor } from "./helpers.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

/** Reads the whole request, then calls `answer` with the socket. */
async function receiver(answer: (sock: Socket) => void): Promise<string> {
  const sockets: Socket[] = [];
  const server = createServer((sock) => {
    sockets.push(sock);
    let head = "";
    let got = 0;
    let answered = false;
    sock.on("data", (d: Buffer) => {
      got += d.length;
      if (head.length < 4096) head += d.toString("latin1");
      const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? -1);
      const start = head.indexOf("\r\n\r\n");
      if (!answered && length >= 0 && start >= 0 && got >= start + 4 + length) {
        answered = true;
        answer(sock);
      }
    });
    sock.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => void (sockets.forEach((s) => s.destroy()), server.close()));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
}

function largeMessage(): string {
  return `Subject: big\r\n\r\n${"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n".repeat(Math.ceil(LARGE_MESSAGE_BYTES / 64) + 1)}`;
}

describe("webhook idle watch", () => {
  // Base time 1 s; the 1 MB message's deadline is 33 s. Before, the reply's bytes did not count
  // as progress: cut 1 s after the upload's last pull, "the reply broke off … timed out", and the
  // receiver that had taken the post got it again at every retry.
  test("a 2xx whose reply comes slowly but steadily after the upload is delivered", async () => {
    const url = await receiver((sock) => {
      sock.write("HTTP/1.1 200 OK\r\ncontent-length: 12\r\nconnection: close\r\n\r\n");
      let sent = 0;
      const tick = setInterval(() => {
        sock.write("x");
        if (++sent === 12) clearInterval(tick), sock.end();
      }, 250); // 3 s in all, no pause of 1 s
      sock.on("close", () => clearInterval(tick));
    });
    const t = makeEnv({});
    const worker = createDeliveryWorker({ config: t.config, db: t.db, logger: silentLogger, pollIntervalMs: 50, attemptTimeoutMs: 1_000 });
    cleanups.push(() => worker.stop());
    const id = seedDelivery(t, { kind: "webhook", target: url, raw: largeMessage() });
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).attempts >= 1, 30_000, "the attempt");
    expect(attemptsOf(t.db, id)[0]!.reply ?? "").toBe("HTTP 200 OK: xxxxxxxxxxxx");
    expect(deliveryOf(t.db, id).state).toBe("delivered");
  }, 60_000);

  test("a 2xx whose headers come just inside the base time and its body just after is delivered", async () => {
    const url = await receiver((sock) => {
      setTimeout(() => sock.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n"), 700);
      setTimeout(() => sock.end("ok"), 1_400);
    });
    const t = makeEnv({});
    const worker = createDeliveryWorker({ config: t.config, db: t.db, logger: silentLogger, pollIntervalMs: 50, attemptTimeoutMs: 1_000 });
    cleanups.push(() => worker.stop());
    const id = seedDelivery(t, { kind: "webhook", target: url, raw: largeMessage() });
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).attempts >= 1, 30_000, "the attempt");
    expect(attemptsOf(t.db, id)[0]!.reply ?? "").toBe("HTTP 200 OK: ok");
  }, 60_000);

  test("a reply that stalls after its headers is still cut at the base time, not the size's deadline", async () => {
    const url = await receiver((sock) => void sock.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\no"));
    const t = makeEnv({});
    const worker = createDeliveryWorker({ config: t.config, db: t.db, logger: silentLogger, pollIntervalMs: 50, attemptTimeoutMs: 1_000 });
    cleanups.push(() => worker.stop());
    const id = seedDelivery(t, { kind: "webhook", target: url, raw: largeMessage() });
    const started = Date.now();
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).attempts >= 1, 30_000, "the attempt cut");
    expect(Date.now() - started).toBeLessThan(8_000);
    expect(attemptsOf(t.db, id)[0]!.reply ?? "").toMatch(/broke off.*timed out/);
  }, 60_000);
});
