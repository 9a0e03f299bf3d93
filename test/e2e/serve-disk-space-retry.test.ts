/**
 * Through the real `mailgw serve` with DATA_DIR on a small tmpfs: a client whose declared SIZE=
 * got `452 4.3.1` and that retries right after the admin freed space is taken, not refused again
 * until the next once-a-second reading (store/free-space.ts RECHECK_AFTER_MS). Tried several
 * times, 150 ms after the space is freed each time: a reading on the second's timer falling into
 * that window every time cannot make it pass. Needs root (mount); skips with a printed reason.
 */
import { expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { fillUntil, withTmpfs } from "../helpers/tmpfs.ts";
import { RawClient, greet } from "../smtp/helpers.ts";
import { serveDir, startServe } from "../smtp/serve-process.ts";

const STORAGE_452 = "452 4.3.1 Insufficient system storage";

test("452 for a declared size, space freed, the retry 150 ms later is taken (not 452 until the next second's reading)", () =>
  withTmpfs("facts-s12-space-", 8, async (mnt) => {
    const dir = serveDir();
    const serve = await startServe("source", dir, { DATA_DIR: mnt, DATABASE_URL: `file:${join(dir, "db", "mail-gateway.db")}`, MAX_MESSAGE_SIZE_MB: "2" });
    try {
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      for (let round = 0; round < 4; round++) {
        const filler = fillUntil(mnt, 1.5 * 1024 * 1024);
        // Refused once a reading has seen the filler (at most a second).
        const deadline = Date.now() + 5000;
        for (;;) {
          const reply = await c.cmd("MAIL FROM:<a@sender.example> SIZE=1000000");
          if (reply === STORAGE_452) break;
          expect(reply).toStartWith("250");
          expect(await c.cmd("RSET")).toStartWith("250");
          if (Date.now() > deadline) throw new Error("no 452 with the disk full");
          await Bun.sleep(50);
        }
        rmSync(filler);
        await Bun.sleep(150);
        expect({ round, reply: await c.cmd("MAIL FROM:<a@sender.example> SIZE=1000000") }).toEqual({ round, reply: expect.stringMatching(/^250 /) });
        expect(await c.cmd("RSET")).toStartWith("250");
      }
      await c.cmd("QUIT");
    } finally {
      expect(await serve.stop("SIGTERM")).toBe(0);
    }
  }), 60_000);
