/**
 * The real `mailgw serve` as the MX a sending MTA (Postfix, Exim, OpenSMTPD) delivers to, for
 * the interoperability tests: STARTTLS with a self-signed certificate, SMTP on a fixed port
 * (the MTA's configuration names it before mailgw starts), and DATA_DIR on a small tmpfs that
 * `fillDisk` can fill to get the 452 4.3.1 (or 451 4.3.0) of a full disk. Mounting needs root, which the
 * tests running a real MTA need anyway.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FREE_SPACE_REFRESH_MS } from "../../src/store/free-space.ts";
import { makeCert } from "../smtp/helpers.ts";
import { serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";
import { archivedCopies, archiveFiles } from "./interop.ts";
import { unmount } from "./tmpfs.ts";

export interface MxGateway {
  /** The running gateway (replaced by `restart`). */
  serve: ServeProcess;
  dataDir: string;
  /** Restarts serve with `env` on top of the base settings (same ports, data and certificate). */
  restart(env?: Record<string, string>): Promise<ServeProcess>;
  archiveFiles(): string[];
  archivedCopies(raw: Buffer): Buffer[];
  /** Fills DATA_DIR's file system and returns once serve has seen it; the returned function frees the space again, and returns once serve has seen that. */
  fillDisk(): () => void;
  close(): Promise<void>;
}

/** Blocks until serve has taken a new free-space reading (FREE_SPACE_REFRESH_MS, and a margin). */
function waitForFreeSpaceReading(): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, FREE_SPACE_REFRESH_MS + 500);
}

export async function startMxGateway(ports: { smtp: number; http: number }, env: Record<string, string> = {}): Promise<MxGateway> {
  const dir = serveDir();
  const tls = makeCert(dir);
  const dataDir = mkdtempSync(join(tmpdir(), "mailgw-interop-spool-"));
  const mount = spawnSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", dataDir]);
  if (mount.status !== 0) throw new Error(`mount tmpfs: ${mount.stderr?.toString()}`);
  const start = (extra: Record<string, string>): Promise<ServeProcess> =>
    startServe("source", dir, {
      SMTP_PORT: String(ports.smtp), HTTP_PORT: String(ports.http), SMTP_TLS_KEY: tls.key, SMTP_TLS_CERT: tls.cert,
      DATA_DIR: dataDir, DATABASE_URL: `file:${join(dir, "db", "mail-gateway.db")}`, ...extra,
    });
  const gateway: MxGateway = {
    serve: await start(env),
    dataDir,
    async restart(extra = {}) {
      if (gateway.serve.proc.exitCode === null && (await gateway.serve.stop()) !== 0) throw new Error("serve did not stop cleanly");
      gateway.serve = await start(extra);
      return gateway.serve;
    },
    archiveFiles: () => archiveFiles(dataDir),
    archivedCopies: (raw) => archivedCopies(dataDir, raw),
    fillDisk() {
      const filler = join(dataDir, "filler");
      spawnSync("dd", ["if=/dev/zero", `of=${filler}`, "bs=64k"]);
      // Once serve has read the full disk (one reading a second, store/free-space.ts), a client
      // that declares SIZE= (Postfix, Exim) gets 452 4.3.1 at MAIL, one that does not (OpenSMTPD)
      // 451 4.3.0 at the end of DATA; before that reading, a SIZE= client got as far as the end
      // of DATA too. Waiting makes the reply a test sees the same every run.
      waitForFreeSpaceReading();
      return () => {
        rmSync(filler, { force: true });
        // serve reads free space once a second (store/free-space.ts): until its next reading, a
        // sending MTA's retry that declares SIZE= would still get 452 4.3.1 at MAIL, and its
        // queue would wait minutes before the next one.
        waitForFreeSpaceReading();
      };
    },
    async close() {
      if (gateway.serve.proc.exitCode === null) await gateway.serve.stop();
      unmount(dataDir);
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return gateway;
}
