/**
 * The graceful stop's waits, with its collaborators reduced to what it reads: a message being
 * stored is always waited for past the grace (the process must never exit between the fsync and
 * the 250, or the client sends it again), and sessions whose lines are not written yet are waited
 * for a moment. The stop through the real serve is test/e2e/serve-shutdown.test.ts.
 */
import { expect, test } from "bun:test";
import type { Server } from "node:net";
import type { GatewaySmtpServer } from "../../src/smtp/connection.ts";
import type { Front } from "../../src/smtp/front.ts";
import { createShutdown } from "../../src/smtp/shutdown.ts";

function parts(): { smtp: GatewaySmtpServer; front: Front; closed: () => boolean } {
  let closed = false;
  const smtp = { connections: new Set(), draining: false } as unknown as GatewaySmtpServer;
  const front = { server: { close: () => void (closed = true) } as unknown as Server, pending: new Set(), dropPending: () => {} } as unknown as Front;
  return { smtp, front, closed: () => closed };
}

test("a message being stored past the grace is waited for; the stop ends once it is stored", async () => {
  const { smtp, front, closed } = parts();
  let storing = true;
  const stop = createShutdown({ smtp, front, isStoring: () => storing, unlogged: () => 0 });
  let done = false;
  const stopped = stop(0).then(() => void (done = true));
  await Bun.sleep(400);
  expect(closed()).toBe(true);
  expect(smtp.draining).toBe(true);
  expect(done).toBe(false);
  storing = false;
  await stopped;
  expect(done).toBe(true);
});

test("sessions whose line is not written yet are waited for, at most about a second", async () => {
  const { smtp, front } = parts();
  let unlogged = 2;
  const stop = createShutdown({ smtp, front, isStoring: () => false, unlogged: () => unlogged });
  let done = false;
  const stopped = stop(0).then(() => void (done = true));
  await Bun.sleep(200);
  expect(done).toBe(false);
  unlogged = 0;
  await stopped;
  // One that never ends (a state left behind) does not hold the stop for good.
  unlogged = 1;
  await stop(0);
});
