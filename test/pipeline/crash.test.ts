/**
 * kill -9 while messages are being received: every message whose receive resolved (the
 * child printed its id — a real client would have had its 250) is, after recover(), in the
 * archive with its exact bytes (or, for forwards, still in the spool for the worker); no
 * archive file exists without its row; nothing is left unfinished.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { silentLogger } from "../../src/log/logger.ts";
import { createPipeline } from "../../src/pipeline.ts";
import { startRulesRuntime } from "../../src/rules-runtime/runtime.ts";
import { openDatabase } from "../../src/store/db.ts";
import { listFiles, makeConfig, message, RULES_YAML } from "./helpers.ts";

const CHILD = join(import.meta.dir, "fixtures", "crash-child.ts");
let dir = "";
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

interface Acked {
  id: string;
  n: number;
  action: string;
}

/** Runs the child until it acknowledged `killAfter` messages (plus a random delay), then SIGKILLs it. */
function runAndKill(start: number, killAfter: number): Promise<Acked[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dir, String(start), "8"], { stdio: ["ignore", "pipe", "inherit"] });
    const acked: Acked[] = [];
    let killing = false;
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    createInterface({ input: child.stdout }).on("line", (line) => {
      const [id, n, action] = line.split(" ");
      if (id && n && action) acked.push({ id, n: Number(n), action });
      if (acked.length >= killAfter && !killing) {
        killing = true;
        setTimeout(() => child.kill("SIGKILL"), Math.floor(Math.random() * 15));
      }
    });
    child.on("error", reject);
    child.on("exit", (_code, signal) => {
      clearTimeout(timer);
      if (signal !== "SIGKILL") reject(new Error(`child ended without being killed (${signal ?? _code})`));
      else resolve(acked);
    });
  });
}

describe("crash (kill -9) during intake", () => {
  test("every acknowledged message survives, archived exactly once", async () => {
    dir = await mkdtemp(join(tmpdir(), "mailgw-crash-"));
    await writeFile(join(dir, "rules.yaml"), RULES_YAML);
    const acked: Acked[] = [];
    for (const [round, killAfter] of [150, 40, 300].entries()) {
      acked.push(...(await runAndKill(round * 100_000, killAfter)));
    }
    expect(acked.length).toBeGreaterThanOrEqual(490);

    const config = await makeConfig(dir);
    const db = openDatabase(config.databasePath);
    const rules = await startRulesRuntime({ file: config.rulesFile, logger: silentLogger, watch: false });
    const pipeline = createPipeline({ config, db, logger: silentLogger, rules });
    await pipeline.recover();
    try {
      for (const a of acked) {
        const subject = a.n % 3 === 0 ? `quote crash ${a.n}` : `crash ${a.n}`;
        const raw = message(subject, 2000 + (a.n % 7) * 3000);
        const row = db.query<{ status: string; archive_path: string | null }, [string]>("SELECT status, archive_path FROM messages WHERE id = ?").get(a.id);
        expect(row?.status).toBe("done");
        if (a.action === "archive") {
          expect(new Uint8Array(await readFile(join(config.dataDir, row?.archive_path ?? "missing")))).toEqual(raw);
        } else {
          expect(a.action).toBe("forward");
          expect(await pipeline.readSpooled(a.id)).toEqual(raw);
        }
      }
      const archiveIds = (await listFiles(join(config.dataDir, "archive"))).map((f) => f.split("/")[1]?.replace(/\.eml$/, ""));
      expect(new Set(archiveIds).size).toBe(archiveIds.length);
      const archivedRows = new Set(
        db.query<{ id: string }, []>("SELECT id FROM messages WHERE archive_path IS NOT NULL").all().map((r) => r.id),
      );
      expect(archiveIds.every((id) => id !== undefined && archivedRows.has(id))).toBe(true);
      expect(db.query<{ n: number }, []>("SELECT count(*) AS n FROM messages WHERE status <> 'done'").get()?.n).toBe(0);
      expect((await listFiles(join(config.dataDir, "spool"))).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    } finally {
      await pipeline.close();
      rules.close();
      db.close();
    }
  }, 60_000);
});
