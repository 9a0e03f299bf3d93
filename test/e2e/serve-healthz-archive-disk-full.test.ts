/**
 * The archive on a disk of its own (mounted at DATA_DIR/archive, README's bigger archive disk)
 * with too little room left for the messages: each is accepted (250: the spool has room), its
 * archive copy fails with ENOSPC and it stays in the spool for the minute sweep. /healthz said
 * 503 for that until a copy succeeded; the write probe of the health check (a few bytes, which
 * still fit) then made it say 200 at once while every copy kept failing and the messages piled
 * up in the spool. The probe clears a received message's 451 only, not a failed archive copy.
 * Needs root (a tmpfs mount): elsewhere the test prints why it is skipped.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { withTmpfs } from "../helpers/tmpfs.ts";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

async function health(url: string): Promise<{ code: number; reason?: string }> {
  const res = await fetch(new URL("/healthz", url));
  const body = (await res.json()) as { checks: { dataDir: { reason?: string } } };
  return { code: res.status, reason: body.checks.dataDir.reason };
}

test("archive disk too full for the messages (they wait in the spool): /healthz stays 503 however often it is asked", async () => {
  const dir = serveDir();
  const archive = join(dir, "data", "archive");
  mkdirSync(archive, { recursive: true });
  await withTmpfs("mailgw-archive-full-", 1, async (mnt) => {
    expect(spawnSync("mount", ["--bind", mnt, archive]).status).toBe(0);
    let serve: ServeProcess | null = null;
    try {
      // All but a few KB taken: a probe's bytes fit, a 100 KB message does not.
      spawnSync("dd", ["if=/dev/zero", `of=${join(archive, "filler")}`, "bs=4k", "count=240"]);
      serve = await startServe("source", dir);
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      const reply = await sendMail(c, "b@company.com", simpleMessage("big", `${"x".repeat(76)}\r\n`.repeat(1300)));
      expect(reply).toMatch(/^250 /);
      const id = /Queued as (\S+)/.exec(reply)?.[1] ?? "";
      await serve.waitForLog((l) => l.msg === "archive failed, message stays spooled" && l.id === id);
      expect(readdirSync(join(dir, "data", "spool"))).toContain(`${id}.eml`);
      for (let i = 0; i < 3; i++) {
        expect(await health(serve.httpUrl)).toEqual({ code: 503, reason: "the last message file (spool or archive) could not be written" });
      }
      c.end();
    } finally {
      if (serve) expect(await serve.stop("SIGTERM")).toBe(0);
      spawnSync("umount", [archive]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
}, 60_000);
