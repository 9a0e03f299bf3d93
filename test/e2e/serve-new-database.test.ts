/**
 * A new database beside an archive that earlier starts filled (DATABASE_URL changed in a move,
 * a restore to another path): with an empty spool nothing is refused, since nothing is lost,
 * but the stats and the message history start from zero. serve said nothing about it; it now
 * warns at start, naming the database and the archive. A first start and a restart say nothing.
 */
import { expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { sendOne } from "../smtp/helpers.ts";
import { serveDir, startServe } from "../smtp/serve-process.ts";

const WARNING = "a new database was created, but the archive holds messages from earlier starts";

test("a new database beside a filled archive: serve warns naming both; a first start and a restart do not", async () => {
  const dir = serveDir();
  const first = await startServe("source", dir);
  await sendOne(first.smtpPort, "archived"); // throws unless 250
  expect(await first.stop("SIGTERM")).toBe(0);
  expect(first.logs.filter((l) => l.msg === WARNING)).toEqual([]);

  const again = await startServe("source", dir);
  expect(await again.stop("SIGTERM")).toBe(0);
  expect(again.logs.filter((l) => l.msg === WARNING)).toEqual([]);

  const moved = join(dir, "elsewhere.db");
  const fresh = await startServe("source", dir, { DATABASE_URL: `file:${moved}` });
  try {
    const line = await fresh.waitForLog((l) => l.msg === WARNING);
    expect(line.level).toBe("warn");
    expect(line.database).toBe(moved);
    expect(line.archive).toBe(join(dir, "data", "archive"));
    expect(String(line.hint)).toContain("DATABASE_URL");
  } finally {
    expect(await fresh.stop("SIGTERM")).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
