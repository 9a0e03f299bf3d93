/**
 * `mailgw queue` beside the real serve (SPEC §1 queue, §5), with a forward whose attempt is under
 * way (the relay stalls after the message's data):
 * - drop: the command says the relay may still receive it instead of a bare "dropped"; the row
 *   and spool file are gone and serve stays up;
 * - after serve was killed: the row stays `delivering` until serve starts again. `queue list`
 *   says that no serve runs and that serve attempts it again at its start (instead of a row that
 *   looks stuck), `queue retry` says the same instead of "only failed, deferred, held can be
 *   retried", and the restarted serve does deliver it. While serve runs, no such note.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { relayVars, startRelay, waitFor, type ScriptedRelay } from "../delivery/helpers.ts";
import { greet, RawClient, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { mailgwQueue, queueList, serveDir, startServe, until, type ServeProcess } from "../smtp/serve-process.ts";

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: to-inbox, priority: 10, action: forward, forward_to: inbox@company.com, conditions: [{ field: subject, operator: contains, value: forward }] }
`;

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

/** A relay in `mode`, serve (from source) forwarding to it, and a greeted client session. */
async function startWithRelay(mode: ScriptedRelay["mode"]) {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  relay.mode = mode;
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  const serve: ServeProcess = await startServe("source", dir, relayVars(relay));
  cleanups.push(async () => {
    if (serve.proc.exitCode === null) await serve.stop("SIGKILL");
  });
  const c = await RawClient.connect(serve.smtpPort);
  await greet(c);
  return { relay, dir, serve, c };
}

test("drop of a forward being sent: the command says the relay may still receive it; serve goes on", async () => {
  const { dir, serve: s, c } = await startWithRelay("stall");
  const reply = await sendMail(c, "b@company.com", simpleMessage("please forward"));
  expect(reply).toStartWith("250 2.0.0");
  const id = reply.split(" ").pop() ?? "";
  await until("the forward is being delivered", async () => (await queueList(dir)).some((e) => e.id === id && e.state === "delivering"), 15_000);

  const dropped = await mailgwQueue(dir, "drop", id);
  expect(dropped.code).toBe(0);
  expect(dropped.stdout).toBe("1 delivery dropped\nit was being delivered: the relay or webhook may still receive it (the attempt under way is not recalled); no further attempt will be made\n");
  expect((await queueList(dir, "queued,deferred,delivering,failed,held")).some((e) => e.id === id)).toBe(false);
  expect(existsSync(join(dir, "data", "spool", `${id}.eml`))).toBe(false);

  // serve is still up and takes mail.
  expect(await sendMail(c, "b@company.com", simpleMessage("archived"))).toStartWith("250 2.0.0");
  c.end();
  expect(await s.stop("SIGTERM")).toBe(0);
}, 60_000);

test("a forward interrupted by kill -9: queue list and retry say serve attempts it again at start; it does", async () => {
  const { relay, dir, serve: first, c } = await startWithRelay("stall");
  const reply = await sendMail(c, "b@company.com", simpleMessage("please forward"));
  expect(reply).toStartWith("250 2.0.0");
  const id = reply.split(" ").pop() ?? "";
  c.end();
  await until("the forward is being delivered", async () => (await queueList(dir)).some((e) => e.id === id && e.state === "delivering"), 15_000);

  // serve is running: no note.
  const running = await mailgwQueue(dir, "list");
  expect(running.code).toBe(0);
  expect(running.stdout).not.toContain("no serve is running");

  await first.stop("SIGKILL");
  const listed = await mailgwQueue(dir, "list");
  expect(listed.code).toBe(0);
  expect(listed.stdout).toContain(`${id}  1  delivering`);
  expect(listed.stdout).toContain(
    `note: no serve is running on ${join(dir, "data")}: the delivery shown as delivering was under way when it stopped; serve attempts it again when it starts`,
  );
  const json = await mailgwQueue(dir, "list", "--json");
  expect(JSON.parse(json.stdout)).toHaveLength(1);
  expect(json.stderr).toContain("no serve is running");

  const retried = await mailgwQueue(dir, "retry", id);
  expect(retried.code).toBe(1);
  expect(retried.stderr).toContain(`delivery ${id} was being delivered when serve stopped: serve attempts it again when it starts`);

  relay.mode = "ok";
  const second = await startServe("source", dir, relayVars(relay));
  cleanups.push(async () => {
    if (second.proc.exitCode === null) await second.stop("SIGKILL");
  });
  await waitFor(() => relay.received.length >= 1, 15_000, "delivered after the restart");
  await until("the queue is empty", async () => (await queueList(dir)).length === 0, 15_000);
  expect(await second.stop("SIGTERM")).toBe(0);
}, 90_000);

test("drop --failed removes every failed delivery (and its spool file) while serve runs, nothing else", async () => {
  const { relay, dir, c } = await startWithRelay("permfail"); // 550: the forwards fail for good
  const ids: string[] = [];
  for (const subject of ["forward one", "forward two"]) ids.push((await sendMail(c, "b@company.com", simpleMessage(subject))).split(" ").pop() ?? "");
  await until("both forwards failed", async () => (await queueList(dir, "failed")).length === 2, 15_000);
  // A third one stays queued behind a relay that now stalls: not failed, so not dropped.
  relay.mode = "stall";
  const kept = (await sendMail(c, "b@company.com", simpleMessage("forward three"))).split(" ").pop() ?? "";
  c.end();
  await until("the third is being delivered", async () => (await queueList(dir)).some((e) => e.id === kept && e.state === "delivering"), 15_000);

  expect(await mailgwQueue(dir, "drop")).toMatchObject({ code: 1, stderr: expect.stringContaining("give either an ID or --failed") });
  const dropped = await mailgwQueue(dir, "drop", "--failed");
  expect(dropped).toMatchObject({ code: 0, stdout: "2 failed deliveries dropped\n" });
  expect(await queueList(dir, "failed")).toEqual([]);
  for (const id of ids) expect(existsSync(join(dir, "data", "spool", `${id}.eml`))).toBe(false);
  expect((await queueList(dir)).map((e) => e.id)).toEqual([kept]);
  expect(existsSync(join(dir, "data", "spool", `${kept}.eml`))).toBe(true);
  expect((await mailgwQueue(dir, "drop", "--failed")).stdout).toBe("no failed deliveries: nothing dropped\n");
}, 60_000);
