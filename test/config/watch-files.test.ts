/**
 * watch-files.ts, shared by the rules hot reload and the TLS certificate reload: a symlinked
 * file is followed to its target's directory (an edit there is seen), "named" ignores other
 * files in the directory, "any" does not, and the stop function stops it.
 */
import { expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { watchFiles } from "../../src/watch-files.ts";

function setup(): { link: string; target: string; linkDir: string } {
  const root = mkdtempSync(join(tmpdir(), "mailgw-watch-"));
  const linkDir = join(root, "etc");
  const targetDir = join(root, "srv");
  mkdirSync(linkDir);
  mkdirSync(targetDir);
  const target = join(targetDir, "real.pem");
  writeFileSync(target, "one");
  const link = join(linkDir, "cert.pem");
  symlinkSync(target, link);
  return { link, target, linkDir };
}

async function changesAfter(only: "named" | "any", act: (s: ReturnType<typeof setup>) => void): Promise<number> {
  const s = setup();
  let changes = 0;
  const stop = watchFiles([s.link], { only, debounceMs: 20, onChange: () => changes++, onError: (err) => { throw err; } });
  await Bun.sleep(50);
  act(s);
  await Bun.sleep(300);
  stop();
  return changes;
}

test("an edit of a symlink's target, in another directory, is seen (named and any)", async () => {
  expect(await changesAfter("named", (s) => writeFileSync(s.target, "two"))).toBe(1);
  expect(await changesAfter("any", (s) => writeFileSync(s.target, "two"))).toBe(1);
});

test("'named' ignores other files next to the link; 'any' does not", async () => {
  expect(await changesAfter("named", (s) => writeFileSync(join(s.linkDir, "other.txt"), "x"))).toBe(0);
  expect(await changesAfter("any", (s) => writeFileSync(join(s.linkDir, "other.txt"), "x"))).toBe(1);
});

test("after stop, nothing fires", async () => {
  const s = setup();
  let changes = 0;
  const stop = watchFiles([s.link], { only: "any", debounceMs: 20, onChange: () => changes++, onError: () => undefined });
  stop();
  writeFileSync(s.target, "three");
  await Bun.sleep(150);
  expect(changes).toBe(0);
});
