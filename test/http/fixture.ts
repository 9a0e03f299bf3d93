/**
 * Test fixture for the HTTP server: a mkdtemp data dir with a real SQLite file (real schema via
 * openDatabase), rows inserted the way the pipeline and delivery worker write them, and a
 * StatusSource made of plain values the test can change.
 */
import type { Database } from "bun:sqlite";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHttpServer, type HttpServer } from "../../src/http/server.ts";
import type { RelayStatus, RulesStatus, StatusSource } from "../../src/http/status-source.ts";
import { silentLogger, type Logger } from "../../src/log/logger.ts";
import { bumpCounter, bumpCounterBatch } from "../../src/store/counters.ts";
import { durationIncrements } from "../../src/store/delivery-durations.ts";
import { openDatabase } from "../../src/store/db.ts";
import type { Action, DeliveryKind, DeliveryState } from "../../src/types.ts";

export interface MutableStatus extends StatusSource {
  listening: boolean;
  relayConfigured: boolean;
  relaySuspended: RelayStatus["suspended"];
  rulesStatus: RulesStatus;
}

export function makeStatus(startedAt = Date.now() - 3_723_000): MutableStatus {
  const s: MutableStatus = {
    startedAt,
    listening: true,
    relayConfigured: true,
    relaySuspended: null,
    rulesStatus: { version: "sha256:1a2b3c4d", loadedAt: startedAt, lastError: null, lastErrorAt: null, reloads: { ok: 0, failed: 0 } },
    smtpListening: () => s.listening,
    smtpTls: () => ({ enabled: true, required: false }),
    rules: () => s.rulesStatus,
    relay: () => ({ configured: s.relayConfigured, address: s.relayConfigured ? "smtp.relay.example:587" : null, suspended: s.relayConfigured ? s.relaySuspended : null }),
  };
  return s;
}

export interface Fixture {
  dir: string;
  dataDir: string;
  db: Database;
  status: MutableStatus;
  cleanup(): void;
}

export function makeFixture(): Fixture {
  const dir = mkdtempSync(join(tmpdir(), "mailgw-http-"));
  const dataDir = join(dir, "data");
  const db = openDatabase(join(dataDir, "mail-gateway.db"));
  // As serve's recovery leaves it: /healthz probes the spool, where every message is written first.
  mkdirSync(join(dataDir, "spool"));
  return {
    dir,
    dataDir,
    db,
    status: makeStatus(),
    cleanup() {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function startServer(
  fx: Fixture,
  opts: { token?: string | null; host?: string; logger?: Logger; hostname?: string } = {},
): Promise<HttpServer> {
  const server = createHttpServer({
    config: {
      http: { host: opts.host ?? "127.0.0.1", port: 0, statsToken: opts.token ?? null },
      dataDir: fx.dataDir,
      databasePath: join(fx.dataDir, "mail-gateway.db"),
      smtp: { hostname: opts.hostname ?? "mx.test.example" },
    },
    db: fx.db,
    logger: opts.logger ?? silentLogger,
    status: fx.status,
  });
  server.start();
  return server;
}

let seq = 0;

export interface MessageInput {
  at?: number;
  subject?: string;
  mailFrom?: string;
  rule?: string | null;
  category?: string;
  action?: Action;
  tls?: boolean;
}

/** Inserts a message row and bumps `received` + `action:<a>` as the intake does. Returns the id. */
export function addMessage(db: Database, m: MessageInput = {}): string {
  const id = `msg${Date.now().toString(36)}${(seq++).toString(36).padStart(4, "0")}`;
  const at = m.at ?? Date.now();
  const action = m.action ?? "archive";
  const category = m.category ?? "default";
  db.query(
    `INSERT INTO messages (id, received_at, client_ip, helo, tls, mail_from, recipients, subject, size, rule, category, action, archive, status)
     VALUES (?, ?, '192.0.2.1', 'client.example', ?, ?, '["inbox@company.com"]', ?, 1234, ?, ?, ?, ?, 'done')`,
  ).run(id, at, m.tls ? 1 : 0, m.mailFrom ?? "sender@example.org", m.subject ?? "hello", m.rule ?? null, category, action, action === "archive" ? 1 : 0);
  bumpCounter(db, at, "received", { rule: m.rule ?? null, category });
  bumpCounter(db, at, `action:${action}`, { rule: m.rule ?? null, category });
  return id;
}

export function addSession(db: Database, tls: boolean, at = Date.now()): void {
  bumpCounter(db, at, "session");
  if (tls) bumpCounter(db, at, "session_tls");
}

export interface DeliveryInput {
  kind?: DeliveryKind;
  target?: string;
  state?: DeliveryState;
  createdAt?: number;
  updatedAt?: number;
  attempts?: number;
  lastError?: string | null;
  category?: string;
}

export function addDelivery(db: Database, messageId: string, d: DeliveryInput = {}): number {
  const created = d.createdAt ?? Date.now();
  const row = db
    .query<{ id: number }, [string, string, string, string, string, number, number, number, number, string | null]>(
      `INSERT INTO deliveries (message_id, kind, target, rule, category, state, attempts, created_at, next_attempt_at, updated_at, last_error)
       VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
    )
    .get(
      messageId,
      d.kind ?? "forward",
      d.target ?? '["sales@company.com"]',
      d.category ?? "default",
      d.state ?? "queued",
      d.attempts ?? 0,
      created,
      created,
      d.updatedAt ?? created,
      d.lastError ?? null,
    );
  if (!row) throw new Error("insert failed");
  return row.id;
}

/** Records an attempt and its counter as the delivery worker does. */
export function addAttempt(
  db: Database, deliveryId: number, kind: DeliveryKind, durationMs: number, result: "delivered" | "deferred" | "failed", at = Date.now(),
  labels: { rule?: string; category?: string } = {},
): void {
  db.query(`INSERT INTO delivery_attempts (delivery_id, at, target, duration_ms, ok, reply) VALUES (?, ?, 'x', ?, ?, ?)`).run(
    deliveryId,
    at,
    durationMs,
    result === "delivered" ? 1 : 0,
    result === "delivered" ? "250 ok" : "451 try later",
  );
  bumpCounter(db, at, `${result}:${kind}`, { rule: labels.rule ?? null, category: labels.category ?? "default" });
  bumpCounterBatch(db, durationIncrements(at, kind, durationMs)); // as finishAttempts records it
}

export async function get(server: HttpServer, path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(new URL(path, server.url), init);
}
