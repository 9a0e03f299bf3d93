/**
 * SIGHUP (`systemctl reload`) as serve's services take it: the rules file and the TLS
 * certificate are read again even when nothing changed on disk as far as the file watcher saw
 * (NFS, an inotify limit reached, a change made through another path), and one service whose
 * reload fails does not keep the others from theirs. The SIGHUP tests through the real serve
 * also change the files, so the watcher alone would make them pass.
 */
import { expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config/config.ts";
import { createLogger } from "../../src/log/logger.ts";
import { gatewayServices, type GatewayParts } from "../../src/serve/gateway-services.ts";
import { serviceGroup, type Service } from "../../src/serve/services.ts";
import { openDatabase } from "../../src/store/db.ts";

const logger = createLogger({ level: "error", format: "json", write: () => undefined });

test("SIGHUP reloads the rules and the TLS certificate, whatever the watcher saw", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mailgw-reload-"));
  const db: Database = openDatabase(join(dir, "m.db"));
  const calls: string[] = [];
  const parts = {
    rules: { reload: async () => (calls.push("rules"), { ok: true, changed: true, version: "v2" }), close: () => undefined },
    smtp: { reloadTls: () => (calls.push("tls"), true) },
    worker: { reloadRelay: () => calls.push("relay") },
  } as unknown as GatewayParts;
  const config = loadConfig({ env: { DATA_DIR: dir, DATABASE_URL: `file:${join(dir, "m.db")}` } });
  const services = gatewayServices(db, { config, logger }, { heap: null, relay: null, smtpAddress: null }, parts);
  for (const s of services) await s.reload?.();
  expect(calls.sort()).toEqual(["rules", "tls"]); // the relay is unchanged (none before, none now)
  db.close();
});

test("a reload that fails is logged and the services after it still reload", async () => {
  const lines: { msg: string; service?: string }[] = [];
  const logged = createLogger({ level: "info", format: "json", write: (s) => void lines.push(JSON.parse(s)) });
  const reloaded: string[] = [];
  const service = (name: string, reload: () => void): Service => ({ name, start() {}, stop() {}, reload });
  const group = serviceGroup([
    service("rules", () => reloaded.push("rules")),
    service("delivery", () => {
      throw new Error("RELAY_SMTP_PORT is not a port");
    }),
    service("smtp", () => reloaded.push("smtp")),
  ], logged);
  await group.start();
  await group.reload();
  expect(reloaded).toEqual(["rules", "smtp"]);
  expect(lines.find((l) => l.msg === "reload failed")?.service).toBe("delivery");
  await group.stop();
});
