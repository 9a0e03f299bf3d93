/**
 * watch-files.ts, shared by the rules hot reload and the TLS certificate reload: a symlinked
 * file is followed to its target's directory (an edit there is seen), other files in the
 * directory are ignored, a replaced directory or a re-pointed link is followed (later edits
 * of the new one are seen, edits of the old copy are not), and the stop function stops it.
 */
import { expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { watchFiles } from "../../src/watch-files.ts";

function setup(): { root: string; link: string; target: string; linkDir: string } {
  const root = mkdtempSync(join(tmpdir(), "mailgw-watch-"));
  const linkDir = join(root, "etc");
  const targetDir = join(root, "srv");
  mkdirSync(linkDir);
  mkdirSync(targetDir);
  const target = join(targetDir, "real.pem");
  writeFileSync(target, "one");
  const link = join(linkDir, "cert.pem");
  symlinkSync(target, link);
  return { root, link, target, linkDir };
}

/** DIR/conf/rules.yaml, as a deployed configuration directory. */
function confDir(): { root: string; conf: string; file: string } {
  const root = mkdtempSync(join(tmpdir(), "mailgw-watch-"));
  const conf = join(root, "conf");
  mkdirSync(conf);
  const file = join(conf, "rules.yaml");
  writeFileSync(file, "v1");
  return { root, conf, file };
}

/** Counts onChange calls while `steps` run (each followed by a pause longer than the debounce). */
async function changesDuring(files: string[], steps: (() => void)[], recheckMs = 100): Promise<number[]> {
  let changes = 0;
  const seen: number[] = [];
  const stop = watchFiles(files, { debounceMs: 20, recheckMs, onChange: () => changes++, onError: () => undefined });
  await Bun.sleep(50);
  try {
    for (const step of steps) {
      step();
      await Bun.sleep(300);
      seen.push(changes);
    }
  } finally {
    stop();
  }
  return seen;
}

test("an edit of a symlink's target, in another directory, is seen", async () => {
  const s = setup();
  expect(await changesDuring([s.link], [() => writeFileSync(s.target, "two")])).toEqual([1]);
});

test("other files next to the link are ignored: a busy neighbour neither triggers nor postpones a reload", async () => {
  const s = setup();
  expect(await changesDuring([s.link], [() => writeFileSync(join(s.linkDir, "other.txt"), "x")])).toEqual([0]);
});

test("the watched directory replaced (mv conf.new conf): the new one is watched, the old copy is not", async () => {
  const { root, conf, file } = confDir();
  const seen = await changesDuring([file], [
    () => {
      mkdirSync(join(root, "conf.new"));
      writeFileSync(join(root, "conf.new", "rules.yaml"), "v2");
      renameSync(conf, join(root, "conf.old"));
      renameSync(join(root, "conf.new"), conf);
    },
    () => writeFileSync(file, "v3"),
    () => writeFileSync(join(root, "conf.old", "rules.yaml"), "stale"),
  ]);
  expect(seen[0]).toBeGreaterThanOrEqual(1); // the swap itself
  expect(seen[1]).toBe(seen[0]! + 1); // an edit of the new directory
  expect(seen[2]).toBe(seen[1]); // the old copy no longer counts
});

test("the directory deleted and recreated later: seen when it is back, and edits after that too", async () => {
  const { root, conf, file } = confDir();
  const seen = await changesDuring([file], [
    () => rmSync(conf, { recursive: true }),
    () => {
      mkdirSync(conf);
      writeFileSync(file, "v2");
    },
    () => writeFileSync(file, "v3"),
  ]);
  expect(seen[1]).toBeGreaterThan(seen[0]!);
  expect(seen[2]).toBe(seen[1]! + 1);
});

test("a symlink re-pointed to another directory: edits of the new target are seen, of the old one not", async () => {
  const s = setup();
  const otherDir = join(s.root, "srv2");
  mkdirSync(otherDir);
  const other = join(otherDir, "real.pem");
  writeFileSync(other, "b1");
  const seen = await changesDuring([s.link], [
    () => {
      unlinkSync(s.link);
      symlinkSync(other, s.link);
    },
    () => writeFileSync(other, "b2"),
    () => writeFileSync(s.target, "stale"),
  ]);
  expect(seen[0]).toBeGreaterThanOrEqual(1);
  expect(seen[1]).toBe(seen[0]! + 1);
  expect(seen[2]).toBe(seen[1]);
});

test("after stop, nothing fires", async () => {
  const s = setup();
  let changes = 0;
  const stop = watchFiles([s.link], { debounceMs: 20, recheckMs: 50, onChange: () => changes++, onError: () => undefined });
  stop();
  writeFileSync(s.target, "three");
  await Bun.sleep(150);
  expect(changes).toBe(0);
});

// A certbot renewal or an editor writes in several steps (key, then cert; write, then rename):
// one reload after the last, not one per step with the files half-written.
test("five writes within the debounce interval make one change", async () => {
  const c = confDir();
  let changes = 0;
  const stop = watchFiles([c.file], { debounceMs: 200, recheckMs: 1000, onChange: () => changes++, onError: () => undefined });
  await Bun.sleep(50);
  try {
    for (let i = 0; i < 5; i++) {
      writeFileSync(c.file, `v${i + 2}`);
      await Bun.sleep(20);
    }
    await Bun.sleep(500);
    expect(changes).toBe(1);
  } finally {
    stop();
  }
});
