/**
 * A new database beside an archive that earlier starts filled (DATABASE_URL changed in a move,
 * a restore to another path): with an empty spool nothing is refused, since nothing is lost,
 * but the stats and the message history start from zero. serve said nothing about it; it now
 * warns at start, naming the database and the archive. A first start and a restart say nothing.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
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

test("the warning also with other entries in the archive: lost+found of an archive disk, an admin's files", async () => {
  const dir = serveDir();
  const first = await startServe("source", dir);
  await sendOne(first.smtpPort, "archived");
  expect(await first.stop("SIGTERM")).toBe(0);
  const archive = join(dir, "data", "archive");
  // An archive on its own disk mounted at DATA_DIR/archive (README) has lost+found, which the
  // service's user cannot read; and anything else an admin leaves there. Any of them, listed
  // before the day with the messages, ended the search: no warning.
  mkdirSync(join(archive, "lost+found"), { mode: 0o700 });
  if (process.getuid?.() !== 0) chmodSync(join(archive, "lost+found"), 0);
  for (let i = 0; i < 20; i++) writeFileSync(join(archive, `old-${2000 + i}.tar.gz`), "");
  // As root (which reads any directory), serve runs as nobody, as it runs as mailgw under systemd,
  // when nobody can read the checkout (a clone in a mktemp directory is 0700: then as root, where
  // the files alone, listed before the day in 21 of 22 orders, show it).
  const nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"];
  const nobodyReads = process.getuid?.() === 0 && spawnSync(nobody[0] ?? "", [...nobody.slice(1), "test", "-r", join(import.meta.dir, "../../src/main.ts")]).status === 0;
  const asUser = nobodyReads ? nobody : [];
  if (asUser.length > 0) {
    spawnSync("chown", ["-R", "nobody:nogroup", dir]);
    spawnSync("chown", ["root:root", join(archive, "lost+found")]);
  }
  const fresh = await startServe("source", dir, { DATABASE_URL: `file:${join(dir, "elsewhere.db")}` }, 20_000, asUser);
  try {
    expect((await fresh.waitForLog((l) => l.msg === WARNING)).level).toBe("warn");
  } finally {
    expect(await fresh.stop("SIGTERM")).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
