/**
 * Spool.read (every delivery attempt: webhook posts and forwards) holds a big message once:
 * measured in a fresh process (its own RSS), reading a 24 MB spool file grows it by about the
 * file's size, not twice that (fs/promises readFile in Bun 1.4.5 kept +51 MB for 25 MB), and
 * the bytes are the file's. A missing file still fails with ENOENT (attempt.ts: permanent).
 */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Spool } from "../../src/spool/spool.ts";
import { newMessageId } from "../../src/spool/ids.ts";

const SPOOL_TS = join(import.meta.dir, "../../src/spool/spool.ts");

test("reading a 24 MB message grows RSS by its size, not twice", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mailgw-spool-read-"));
  try {
    const script = `
      import { Spool } from ${JSON.stringify(SPOOL_TS)};
      import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
      const rss = () => Number(/VmHWM:\\s+(\\d+)/.exec(readFileSync("/proc/self/status", "utf8"))[1]) * 1024;
      const spool = new Spool(${JSON.stringify(dir)});
      await spool.ensureDirs();
      const id = ${JSON.stringify(newMessageId())};
      const bytes = Buffer.alloc(24 * 1024 * 1024);
      for (let i = 0; i < bytes.length; i += 4096) bytes[i] = i & 0xff;
      writeFileSync(spool.pathOf(id), bytes);
      Bun.gc(true);
      writeFileSync("/proc/self/clear_refs", "5");
      const before = rss();
      const read = await spool.read(id);
      const growth = rss() - before;
      console.log(JSON.stringify({ growth, size: bytes.length, same: Buffer.from(read).equals(bytes) }));
    `;
    const proc = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
    const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    const result = JSON.parse(out.trim().split("\n").pop() ?? "null") as { growth: number; size: number; same: boolean } | null;
    expect(result, err).not.toBeNull();
    expect(result!.same).toBe(true);
    expect(result!.growth).toBeLessThan(1.4 * result!.size);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);

test("a missing spool file is ENOENT", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mailgw-spool-read-"));
  try {
    const spool = new Spool(dir);
    await spool.ensureDirs();
    const err = await spool.read(newMessageId()).catch((e: unknown) => e);
    expect((err as NodeJS.ErrnoException).code).toBe("ENOENT");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
