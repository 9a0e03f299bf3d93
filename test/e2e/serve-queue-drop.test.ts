/**
 * `mailgw queue drop` beside the real serve (SPEC §1 queue, §5): a forward whose attempt is
 * under way (the relay stalls after the message's data) is dropped, and the command says the
 * relay may still receive it instead of a bare "dropped"; the row and spool file are gone and
 * serve stays up.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { relayVars, startRelay } from "../delivery/helpers.ts";
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
});

test("drop of a forward being sent: the command says the relay may still receive it; serve goes on", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  relay.mode = "stall";
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  const s: ServeProcess = await startServe("source", dir, relayVars(relay));
  cleanups.push(async () => {
    if (s.proc.exitCode === null) await s.stop("SIGKILL");
  });
  const c = await RawClient.connect(s.smtpPort);
  await greet(c);
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
