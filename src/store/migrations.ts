/**
 * Versioned schema migrations. Each runs once, in order, inside a transaction; the applied
 * version is kept in `PRAGMA user_version`. Never edit a released migration: add a new one.
 *
 * Tables:
 *  messages          one row per message that reached DATA's end (rejects included): the
 *                    envelope, subject, size and decision. status `spooled` = accepted, its
 *                    post-250 actions (archive, spool cleanup) not finished; `done` = finished.
 *  deliveries        one row per forward/webhook action: the durable queue (SPEC §5).
 *  delivery_attempts every attempt: when, how long, ok, the reply or error.
 *  daily_counters    counters per UTC day, metric, rule and category, for /stats and /metrics.
 *                    metric: received | action:<action> | archived | session | session_tls |
 *                    <delivered|deferred|failed>:<forward|webhook> |
 *                    duration:<forward|webhook>:<le> | duration_ms:<forward|webhook>
 *  counter_totals    all-time sums of daily_counters per metric, rule and category (/metrics),
 *                    kept by triggers on daily_counters.
 *  meta              small key/value facts (e.g. last rules reload).
 */

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "initial",
    sql: `
      CREATE TABLE messages (
        id           TEXT PRIMARY KEY,
        received_at  INTEGER NOT NULL,            -- unix ms
        client_ip    TEXT NOT NULL,
        helo         TEXT NOT NULL,
        tls          INTEGER NOT NULL,            -- 0/1
        mail_from    TEXT NOT NULL,
        recipients   TEXT NOT NULL,               -- JSON array of envelope recipients
        subject      TEXT NOT NULL,
        size         INTEGER NOT NULL,            -- bytes as stored (Received header included)
        rule         TEXT,                        -- NULL = default decision
        category     TEXT NOT NULL,
        action       TEXT NOT NULL,               -- reject | archive | forward | webhook | drop
        archive      INTEGER NOT NULL DEFAULT 0,  -- 1 when a copy goes to the archive
        status       TEXT NOT NULL,               -- spooled | done
        archive_path TEXT                         -- relative to DATA_DIR, once archived
      );
      CREATE INDEX messages_received_at ON messages(received_at);
      CREATE INDEX messages_pending ON messages(status) WHERE status <> 'done';

      CREATE TABLE deliveries (
        id              INTEGER PRIMARY KEY,
        message_id      TEXT NOT NULL REFERENCES messages(id),
        kind            TEXT NOT NULL,            -- forward | webhook
        target          TEXT NOT NULL,            -- forward: JSON array of addresses; webhook: URL
        rule            TEXT,
        category        TEXT NOT NULL,
        state           TEXT NOT NULL,            -- queued | deferred | held | delivering | delivered | failed
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        last_error      TEXT,
        delivered_at    INTEGER
      );
      CREATE INDEX deliveries_due ON deliveries(state, next_attempt_at);
      CREATE INDEX deliveries_message ON deliveries(message_id);

      CREATE TABLE delivery_attempts (
        id          INTEGER PRIMARY KEY,
        delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
        at          INTEGER NOT NULL,
        target      TEXT NOT NULL,
        duration_ms INTEGER NOT NULL,
        ok          INTEGER NOT NULL,
        reply       TEXT
      );
      CREATE INDEX delivery_attempts_delivery ON delivery_attempts(delivery_id);

      CREATE TABLE daily_counters (
        day      TEXT NOT NULL,                   -- YYYY-MM-DD (UTC)
        metric   TEXT NOT NULL,
        rule     TEXT NOT NULL DEFAULT '',
        category TEXT NOT NULL DEFAULT '',
        n        INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (day, metric, rule, category)
      ) WITHOUT ROWID;

      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    `,
  },
  {
    // The delivery worker claims due rows per (kind, state) in next_attempt_at order. With only
    // deliveries_due, skipping the forwards (relay at its cap) to reach a webhook meant walking
    // every queued forward, and `state IN (...) ORDER BY` sorted all due rows on every claim:
    // O(backlog) per claim, quadratic over a backlog. This index makes each claim a range seek.
    version: 2,
    name: "deliveries-kind-due",
    sql: `CREATE INDEX deliveries_kind_due ON deliveries(kind, state, next_attempt_at);`,
  },
  {
    // A commit group's rows are written before the one syncfs that makes them, their spool files
    // and the WAL durable (act/intake.ts). After a crash, rows of groups not known to be durable
    // are checked against their files: size and CRC-32 (spool_crc) of the bytes as stored, found
    // by commit_seq (the group's number, compared with meta `intake_durable_seq`).
    version: 3,
    name: "messages-commit-check",
    sql: `
      ALTER TABLE messages ADD COLUMN spool_crc INTEGER;
      ALTER TABLE messages ADD COLUMN commit_seq INTEGER;
      CREATE INDEX messages_commit_seq ON messages(commit_seq) WHERE commit_seq IS NOT NULL;
    `,
  },
  {
    // `mailgw queue retry` gives a delivery a fresh start: QUEUE_MAX_AGE_HOURS and the backoff
    // count from the retry (retry_from, and the attempts made before it), not from the first
    // queueing, so a delivery retried after a long outage is not failed again at its first 4xx.
    // created_at stays the message's real age (`queue list`).
    version: 4,
    name: "deliveries-retry-from",
    sql: `
      ALTER TABLE deliveries ADD COLUMN retry_from INTEGER;
      ALTER TABLE deliveries ADD COLUMN retry_attempts INTEGER NOT NULL DEFAULT 0;
    `,
  },
  {
    // Without AUTOINCREMENT, SQLite gives a new row max(id)+1, so dropping the newest delivery
    // (`queue drop`) handed its id to the next one: `queue retry 57` could then act on another
    // message, and /metrics' histogram, which reads attempts by id above the last one seen,
    // missed attempts that reused an id. Rebuilt with AUTOINCREMENT, ids are never reused.
    // The new attempts table points at deliveries_new, so no step drops a parent that still has
    // children (foreign_keys is on and cannot be turned off inside the migration's transaction);
    // the rename then rewrites that reference to "deliveries". Rows whose parent is gone (only
    // possible after a DELETE made in the sqlite3 shell, where foreign keys are off by default)
    // are not copied: they would fail the copy's own FK check and block every start, and nothing
    // can use them (claims join messages; an attempt belongs to a delivery).
    version: 5,
    name: "ids-never-reused",
    sql: `
      CREATE TABLE deliveries_new (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id      TEXT NOT NULL REFERENCES messages(id),
        kind            TEXT NOT NULL,
        target          TEXT NOT NULL,
        rule            TEXT,
        category        TEXT NOT NULL,
        state           TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        last_error      TEXT,
        delivered_at    INTEGER,
        retry_from      INTEGER,
        retry_attempts  INTEGER NOT NULL DEFAULT 0
      );
      INSERT INTO deliveries_new (id, message_id, kind, target, rule, category, state, attempts, created_at,
          next_attempt_at, updated_at, last_error, delivered_at, retry_from, retry_attempts)
        SELECT id, message_id, kind, target, rule, category, state, attempts, created_at,
          next_attempt_at, updated_at, last_error, delivered_at, retry_from, retry_attempts FROM deliveries
          WHERE message_id IN (SELECT id FROM messages);

      CREATE TABLE delivery_attempts_new (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id INTEGER NOT NULL REFERENCES deliveries_new(id),
        at          INTEGER NOT NULL,
        target      TEXT NOT NULL,
        duration_ms INTEGER NOT NULL,
        ok          INTEGER NOT NULL,
        reply       TEXT
      );
      INSERT INTO delivery_attempts_new (id, delivery_id, at, target, duration_ms, ok, reply)
        SELECT id, delivery_id, at, target, duration_ms, ok, reply FROM delivery_attempts
          WHERE delivery_id IN (SELECT id FROM deliveries_new);

      DROP TABLE delivery_attempts;
      DROP TABLE deliveries;
      ALTER TABLE deliveries_new RENAME TO deliveries;
      ALTER TABLE delivery_attempts_new RENAME TO delivery_attempts;
      CREATE INDEX deliveries_due ON deliveries(state, next_attempt_at);
      CREATE INDEX deliveries_message ON deliveries(message_id);
      CREATE INDEX deliveries_kind_due ON deliveries(kind, state, next_attempt_at);
      CREATE INDEX delivery_attempts_delivery ON delivery_attempts(delivery_id);
    `,
  },
  {
    // /metrics' delivery duration histogram was summed from delivery_attempts at each start, so
    // attempts whose rows `queue drop` or archive retention deleted dropped out of it after a
    // restart: its counts went down, and Prometheus took that for a counter reset (increase()
    // then added the whole remaining count). It is now counted at write time in daily_counters
    // (store/delivery-durations.ts); this copies the attempts still on record into it, with the
    // bucket bounds of DURATION_BUCKETS_SECONDS. An attempt whose delivery is gone counts as a
    // forward, as the histogram did.
    version: 6,
    name: "delivery-duration-counters",
    sql: `
      CREATE TEMP TABLE attempt_buckets AS
        SELECT strftime('%Y-%m-%d', a.at / 1000, 'unixepoch') AS day,
               CASE WHEN d.kind = 'webhook' THEN 'webhook' ELSE 'forward' END AS kind,
               CASE
               WHEN max(a.duration_ms, 0) <= 50 THEN '0.05'
               WHEN max(a.duration_ms, 0) <= 100 THEN '0.1'
               WHEN max(a.duration_ms, 0) <= 250 THEN '0.25'
               WHEN max(a.duration_ms, 0) <= 500 THEN '0.5'
               WHEN max(a.duration_ms, 0) <= 1000 THEN '1'
               WHEN max(a.duration_ms, 0) <= 2500 THEN '2.5'
               WHEN max(a.duration_ms, 0) <= 5000 THEN '5'
               WHEN max(a.duration_ms, 0) <= 10000 THEN '10'
               WHEN max(a.duration_ms, 0) <= 30000 THEN '30'
               WHEN max(a.duration_ms, 0) <= 60000 THEN '60'
               WHEN max(a.duration_ms, 0) <= 120000 THEN '120'
               ELSE '+Inf' END AS le,
               max(a.duration_ms, 0) AS ms
          FROM delivery_attempts a LEFT JOIN deliveries d ON d.id = a.delivery_id;
      INSERT INTO daily_counters (day, metric, rule, category, n)
        SELECT day, 'duration:' || kind || ':' || le, '', '', count(*) FROM attempt_buckets GROUP BY day, kind, le;
      INSERT INTO daily_counters (day, metric, rule, category, n)
        SELECT day, 'duration_ms:' || kind, '', '', sum(ms) FROM attempt_buckets GROUP BY day, kind;
      DROP TABLE attempt_buckets;
    `,
  },
  {
    // A webhook URL at its cap (a receiver that hangs: each post holds its slot until the
    // timeout) keeps its backlog due, and the claim's one query over deliveries_kind_due walked
    // every row of it to reach another URL's posts: 2 ms per claim at 20,000 rows, hundreds of
    // claims a second while forwards flow. The claim now finds the URLs with rows in a state
    // (a seek per URL) and reads each free URL's due rows on their own (queue-store.ts).
    // Partial: forwards, the bulk of the rows, do not maintain it.
    version: 7,
    name: "webhook-target-due",
    sql: `CREATE INDEX deliveries_webhook_due ON deliveries(state, target, next_attempt_at) WHERE kind = 'webhook';`,
  },
  {
    // /metrics exports all-time sums of daily_counters. Summed per scrape, that read every row
    // ever written (a row per day × metric × rule × category: 720,000 after a year of 300 rules)
    // and held the event loop, SMTP included, ~1 s per scrape (20 s for 30 at once). The sums are
    // kept here instead, by triggers on daily_counters in the writer's own transaction, so they
    // are exactly the sum of its rows whoever writes them; /metrics reads one row per series.
    version: 8,
    name: "counter-totals",
    sql: `
      CREATE TABLE counter_totals (
        metric   TEXT NOT NULL,
        rule     TEXT NOT NULL DEFAULT '',
        category TEXT NOT NULL DEFAULT '',
        n        INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (metric, rule, category)
      ) WITHOUT ROWID;
      INSERT INTO counter_totals (metric, rule, category, n)
        SELECT metric, rule, category, SUM(n) FROM daily_counters WHERE true GROUP BY metric, rule, category;
      CREATE TRIGGER daily_counters_total_insert AFTER INSERT ON daily_counters BEGIN
        INSERT INTO counter_totals (metric, rule, category, n) VALUES (NEW.metric, NEW.rule, NEW.category, NEW.n)
          ON CONFLICT (metric, rule, category) DO UPDATE SET n = n + excluded.n;
      END;
      -- The counters' own upsert (n = n + excluded.n, the same key): one UPDATE by primary key, on
      -- every commit group's counters; the row exists (the insert trigger, or the copy above).
      CREATE TRIGGER daily_counters_total_update AFTER UPDATE OF n ON daily_counters
        WHEN OLD.metric = NEW.metric AND OLD.rule = NEW.rule AND OLD.category = NEW.category BEGIN
        UPDATE counter_totals SET n = n + NEW.n - OLD.n WHERE metric = NEW.metric AND rule = NEW.rule AND category = NEW.category;
      END;
      -- A row moved to another key (no code does; a hand-made fix might): out of one total, into the other.
      CREATE TRIGGER daily_counters_total_rekey AFTER UPDATE ON daily_counters
        WHEN OLD.metric IS NOT NEW.metric OR OLD.rule IS NOT NEW.rule OR OLD.category IS NOT NEW.category BEGIN
        INSERT INTO counter_totals (metric, rule, category, n) VALUES (OLD.metric, OLD.rule, OLD.category, -OLD.n)
          ON CONFLICT (metric, rule, category) DO UPDATE SET n = n + excluded.n;
        INSERT INTO counter_totals (metric, rule, category, n) VALUES (NEW.metric, NEW.rule, NEW.category, NEW.n)
          ON CONFLICT (metric, rule, category) DO UPDATE SET n = n + excluded.n;
      END;
      CREATE TRIGGER daily_counters_total_delete AFTER DELETE ON daily_counters BEGIN
        INSERT INTO counter_totals (metric, rule, category, n) VALUES (OLD.metric, OLD.rule, OLD.category, -OLD.n)
          ON CONFLICT (metric, rule, category) DO UPDATE SET n = n + excluded.n;
      END;
    `,
  },
  {
    // The stats page lists the 20 latest failed deliveries. With only deliveries_due (state,
    // next_attempt_at), SQLite read every failed row, long relay errors included, and sorted them
    // per request: 40 ms of event loop at 5,000 failed. Partial: only failed rows maintain it.
    version: 9,
    name: "deliveries-failed-latest",
    sql: `CREATE INDEX deliveries_failed_latest ON deliveries(updated_at, id) WHERE state = 'failed';`,
  },
  {
    // The `archived` counter (archive copies, archive: true forwards/webhooks included) came
    // without a migration: after an upgrade, /stats said "0 archived today, 0 in 30 days" and
    // mailgw_messages_archived_total started at 0 beside the archive the old version had filled.
    // Backfilled from what is on record: `action:archive` counters (these outlive retention), and
    // the rows of archive: true forwards/webhooks still kept. Databases that already count it
    // (made after the counter came, at schema 8 or 9) keep their figures: max(), never a sum.
    version: 10,
    name: "archived-counter-backfill",
    sql: `
      INSERT INTO daily_counters (day, metric, rule, category, n)
        SELECT day, 'archived', rule, category, SUM(n) FROM (
          SELECT day, rule, category, n FROM daily_counters WHERE metric = 'action:archive'
          UNION ALL
          SELECT strftime('%Y-%m-%d', received_at / 1000, 'unixepoch'), coalesce(rule, ''), category, count(*)
            FROM messages WHERE archive = 1 AND action <> 'archive' GROUP BY 1, 2, 3
        ) WHERE true GROUP BY day, rule, category
        ON CONFLICT (day, metric, rule, category) DO UPDATE SET n = max(n, excluded.n);
    `,
  },
];
