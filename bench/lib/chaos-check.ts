/**
 * The end of bench/chaos-soak.ts: with the faults off and the queue drained, checks that every
 * message a client got 250 for is where its rule sends it (archive, relay, webhook), counts and
 * explains duplicates, looks for spool leftovers, messages or deliveries not finished, and
 * compares the database with /stats.json and /metrics. Returns the problems found (empty: all
 * held) and prints the figures. Not a test.
 */
import { Database } from "bun:sqlite";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Hook, Relay, Took } from "./chaos-peers.ts";

export interface Sent { id: string; token: string; kind: "archive" | "forward" | "fwdarch" | "webhook" | "drop" | "reject"; size: number; at: number }

export interface ReconcileInput {
  work: string; dataDir: string; httpPort: number; sent: Sent[];
  client: { rejected: number } & Record<string, number>; relay: Relay; hook: Hook;
  rss: Array<{ t: number; pid: number; rssMB: number }>;
  stats: Record<string, unknown>; drained: boolean; binary: string; env: Record<string, string>;
}

function listTree(dir: string, out: string[] = []): string[] {
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) listTree(p, out);
    else out.push(p);
  }
  return out;
}

function countBy(took: Took[]): Map<string, Took[]> {
  const m = new Map<string, Took[]>();
  for (const t of took) m.set(t.id, [...(m.get(t.id) ?? []), t]);
  return m;
}

function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => ls[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

export async function reconcile(inp: ReconcileInput): Promise<string[]> {
  const problems: string[] = [];
  const say = (s: string) => console.log(`  ${s}`);
  const { sent, dataDir } = inp;
  const ids = new Set(sent.map((s) => s.id));
  if (ids.size !== sent.length) problems.push(`${sent.length - ids.size} ids were given twice in "Queued as"`);

  // ---- where each accepted message went
  const archived = new Set(listTree(join(dataDir, "archive")).filter((p) => p.endsWith(".eml")).map((p) => p.split("/").pop()!.slice(0, -4)));
  const relayBy = countBy(inp.relay.took), hookBy = countBy(inp.hook.took);
  const lost: string[] = [];
  const wrongToken: string[] = [];
  for (const s of sent) {
    const needArchive = s.kind === "archive" || s.kind === "fwdarch";
    const needRelay = s.kind === "forward" || s.kind === "fwdarch";
    const needHook = s.kind === "webhook";
    if (needArchive && !archived.has(s.id)) lost.push(`${s.id} (${s.kind}, ${s.size} B): not in the archive`);
    if (needRelay && !relayBy.has(s.id)) lost.push(`${s.id} (${s.kind}, ${s.size} B): never reached the relay`);
    if (needHook && !hookBy.has(s.id)) lost.push(`${s.id} (${s.kind}, ${s.size} B): never reached the webhook`);
    for (const t of [...(relayBy.get(s.id) ?? []), ...(hookBy.get(s.id) ?? [])]) if (t.token !== s.token) wrongToken.push(`${s.id}: ${t.token} != ${s.token}`);
    if (!needArchive && archived.has(s.id)) problems.push(`${s.id} (${s.kind}) is in the archive, its rule does not archive`);
  }
  if (lost.length) problems.push(`${lost.length} accepted messages LOST: ${lost.slice(0, 10).join("; ")}`);
  if (wrongToken.length) problems.push(`${wrongToken.length} deliveries carry another message's token: ${wrongToken.slice(0, 5).join("; ")}`);

  // ---- duplicates
  const db = new Database(join(dataDir, "mail-gateway.db"), { readonly: true });
  const interruptedAttempts = (id: string) => db.query<{ n: number }, [string]>(
    `SELECT COUNT(*) AS n FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.message_id = ? AND a.reply LIKE '%interrupted%'`,
  ).get(id)?.n ?? 0;
  const dupReport = (name: string, by: Map<string, Took[]>) => {
    let dups = 0, explained = 0;
    const unexplained: string[] = [];
    for (const [id, ts] of by) {
      if (ts.length < 2) continue;
      dups += ts.length - 1;
      // Explained: the copy before was followed by a kill -9 of serve before mailgw recorded it.
      if (ts.slice(0, -1).every((t) => t.killedAfter) || interruptedAttempts(id) >= ts.length - 1) explained += ts.length - 1;
      else unexplained.push(`${id} x${ts.length} (interrupted attempts recorded: ${interruptedAttempts(id)}, kill right after: ${ts.map((t) => t.killedAfter).join(",")})`);
    }
    say(`${name}: ${by.size} distinct messages, ${dups} duplicates (${explained} explained by kill -9 during the attempt)`);
    if (unexplained.length) problems.push(`${name}: ${unexplained.length} duplicates not explained by a kill -9: ${unexplained.slice(0, 8).join("; ")}`);
  };
  dupReport("relay", relayBy);
  dupReport("webhook", hookBy);
  const unknownRelay = [...relayBy.keys()].filter((id) => !ids.has(id));
  const unknownHook = [...hookBy.keys()].filter((id) => !ids.has(id));
  say(`delivered but not acknowledged to a client (250 lost to a kill, or never sent): relay ${unknownRelay.length}, webhook ${unknownHook.length}`);

  // ---- spool
  const spoolFiles = listTree(join(dataDir, "spool"));
  const leftovers = spoolFiles.filter((p) => !p.includes("/orphaned/"));
  const orphaned = spoolFiles.filter((p) => p.includes("/orphaned/"));
  if (leftovers.length) problems.push(`spool leftovers after the drain: ${leftovers.slice(0, 10).join(", ")}`);
  const orphanedAccepted = orphaned.filter((p) => ids.has(p.split("/").pop()!.replace(/\..*$/, "")));
  if (orphanedAccepted.length) problems.push(`accepted messages moved to spool/orphaned: ${orphanedAccepted.join(", ")}`);
  say(`spool: ${leftovers.length} leftovers, ${orphaned.length} in orphaned/ (${orphaned.map((p) => `${p.split("/").pop()} ${statSync(p).size} B`).join(", ")})`);

  // ---- database
  const rows = db.query<{ id: string; action: string; category: string; status: string; archive: number }, []>(
    `SELECT id, action, category, status, archive FROM messages`).all();
  const rowById = new Map(rows.map((r) => [r.id, r]));
  const expectAction: Record<Sent["kind"], string> = { archive: "archive", forward: "forward", fwdarch: "forward", webhook: "webhook", drop: "drop", reject: "reject" };
  const missingRows = sent.filter((s) => !rowById.has(s.id));
  if (missingRows.length) problems.push(`${missingRows.length} accepted messages have no row: ${missingRows.slice(0, 5).map((s) => s.id).join(", ")}`);
  const wrongAction = sent.filter((s) => rowById.has(s.id) && rowById.get(s.id)!.action !== expectAction[s.kind]);
  if (wrongAction.length) problems.push(`${wrongAction.length} rows with another action than their rule's: ${wrongAction.slice(0, 5).map((s) => `${s.id} ${s.kind}->${rowById.get(s.id)!.action}`).join(", ")}`);
  const sizeOf = new Map(db.query<{ id: string; size: number }, []>(`SELECT id, size FROM messages`).all().map((r) => [r.id, r.size]));
  const badSize: string[] = [];
  for (const t of [...inp.relay.took, ...inp.hook.took]) if (sizeOf.has(t.id) && sizeOf.get(t.id) !== t.bytes) badSize.push(`${t.id} got ${t.bytes} B, stored ${sizeOf.get(t.id)} B`);
  for (const p of listTree(join(dataDir, "archive")).filter((p) => p.endsWith(".eml"))) {
    const id = p.split("/").pop()!.slice(0, -4);
    if (sizeOf.has(id) && statSync(p).size !== sizeOf.get(id)) badSize.push(`archive ${id} ${statSync(p).size} B, stored ${sizeOf.get(id)} B`);
  }
  if (badSize.length) problems.push(`${badSize.length} copies differ in size from the stored message: ${badSize.slice(0, 6).join("; ")}`);
  const notDone = rows.filter((r) => r.status !== "done");
  if (notDone.length) problems.push(`${notDone.length} messages not done: ${notDone.slice(0, 5).map((r) => `${r.id} ${r.status}`).join(", ")}`);
  const extra = rows.filter((r) => !ids.has(r.id) && r.action !== "reject");
  say(`rows without a 250 seen by a client (acknowledgement lost to a kill -9): ${extra.length} (${extra.map((r) => r.action).join(",")})`);
  const rejectRows = rows.filter((r) => r.action === "reject").length;
  say(`rejects: client got ${inp.client.rejected} 550s, database has ${rejectRows} reject rows`);
  if (rejectRows < inp.client.rejected) problems.push(`the clients got ${inp.client.rejected} 550s but only ${rejectRows} reject rows exist`);

  const states = db.query<{ kind: string; state: string; n: number }, []>(`SELECT kind, state, COUNT(*) AS n FROM deliveries GROUP BY kind, state`).all();
  say(`deliveries: ${states.map((s) => `${s.kind}/${s.state}=${s.n}`).join(" ")}`);
  const open = db.query<{ id: number; message_id: string; kind: string; state: string; attempts: number; last_error: string | null }, []>(
    `SELECT id, message_id, kind, state, attempts, last_error FROM deliveries WHERE state <> 'delivered'`).all();
  if (open.length) problems.push(`${open.length} deliveries not delivered after the drain: ${open.slice(0, 8).map((d) => `${d.message_id}#${d.id} ${d.kind} ${d.state} x${d.attempts} ${d.last_error ?? ""}`).join("; ")}`);
  const deliveredIds = (kind: string) => new Set(db.query<{ message_id: string }, [string]>(`SELECT message_id FROM deliveries WHERE kind = ? AND state = 'delivered'`).all(kind).map((r) => r.message_id));
  const relayDelivered = deliveredIds("forward"), hookDelivered = deliveredIds("webhook");
  const claimedNotReceived = [...relayDelivered].filter((id) => !relayBy.has(id)).concat([...hookDelivered].filter((id) => !hookBy.has(id)));
  if (claimedNotReceived.length) problems.push(`${claimedNotReceived.length} deliveries marked delivered that the relay/webhook never took: ${claimedNotReceived.slice(0, 5).join(", ")}`);

  // ---- counters: database vs /stats.json vs /metrics
  const metrics = await fetch(`http://127.0.0.1:${inp.httpPort}/metrics`).then((r) => r.text());
  const sj = (await fetch(`http://127.0.0.1:${inp.httpPort}/stats.json`).then((r) => r.json())) as Record<string, any>;
  writeFileSync(join(inp.work, "final-metrics.txt"), metrics);
  writeFileSync(join(inp.work, "final-stats.json"), JSON.stringify(sj, null, 2));
  const cmp = (what: string, a: number, b: number) => { if (a !== b) problems.push(`${what}: ${a} != ${b}`); };
  cmp("metrics received_total vs message rows", metricValue(metrics, "mailgw_messages_received_total"), rows.length);
  cmp("stats.json today.received vs message rows", sj.totals.today.received, rows.length);
  for (const action of ["reject", "archive", "forward", "webhook", "drop"]) {
    const n = rows.filter((r) => r.action === action).length;
    cmp(`metrics messages_total{action=${action}} vs rows`, metricValue(metrics, "mailgw_messages_total", { action }), n);
    cmp(`stats.json byAction.${action} vs rows`, sj.totals.today.byAction[action], n);
    for (const category of new Set(rows.filter((r) => r.action === action).map((r) => r.category))) {
      cmp(`metrics messages_total{action=${action},category=${category}} vs rows`, metricValue(metrics, "mailgw_messages_total", { action, category }),
        rows.filter((r) => r.action === action && r.category === category).length);
    }
  }
  for (const kind of ["forward", "webhook"]) {
    const att = db.query<{ ok: number; n: number }, [string]>(
      `SELECT a.ok AS ok, COUNT(*) AS n FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.kind = ? GROUP BY a.ok`).all(kind);
    const okN = att.find((a) => a.ok === 1)?.n ?? 0, badN = att.find((a) => a.ok === 0)?.n ?? 0;
    const delivered = metricValue(metrics, "mailgw_deliveries_total", { kind, result: "delivered" });
    const deferred = metricValue(metrics, "mailgw_deliveries_total", { kind, result: "deferred" });
    const failed = metricValue(metrics, "mailgw_deliveries_total", { kind, result: "failed" });
    say(`${kind}: counters delivered ${delivered} deferred ${deferred} failed ${failed}; attempts ok ${okN} not ok ${badN}; rows delivered ${kind === "forward" ? relayDelivered.size : hookDelivered.size}`);
    cmp(`metrics deliveries_total{${kind},delivered} vs ok attempts`, delivered, okN);
    // More results than failed attempts: deliveries given up at QUEUE_MAX_AGE_HOURS without an
    // attempt (behind a suspended relay or a failing URL, queue/expire.ts) count as failed too.
    say(`${kind}: ${deferred + failed - badN} results without an attempt (given up while waiting)`);
    if (deferred + failed < badN) problems.push(`metrics deliveries_total{${kind},deferred+failed} ${deferred + failed} < ${badN} failed attempts`);
    const jd = sj.totals.today.deliveries[kind];
    cmp(`stats.json deliveries.${kind}.delivered vs metrics`, jd.delivered, delivered);
    cmp(`stats.json deliveries.${kind}.deferred vs metrics`, jd.deferred, deferred);
    cmp(`stats.json deliveries.${kind}.failed vs metrics`, jd.failed, failed);
  }
  for (const state of ["queued", "deferred", "held", "delivering", "failed"]) {
    cmp(`metrics queue_depth{${state}} vs rows`, metricValue(metrics, "mailgw_queue_depth", { state }), open.filter((d) => d.state === state).length);
  }
  db.close();

  // ---- memory
  const maxRss = inp.rss.reduce((a, s) => Math.max(a, s.rssMB), 0);
  const pids = [...new Set(inp.rss.map((s) => s.pid))];
  say(`RSS: max ${maxRss} MB over ${inp.rss.length} samples, ${pids.length} processes; last ${inp.rss.at(-1)?.rssMB ?? "?"} MB`);
  if (maxRss > 700) problems.push(`serve's RSS reached ${maxRss} MB`);
  if (!inp.drained) problems.push("the queue did not drain within the wait");

  say(`clients: ${sent.length} accepted (${Object.entries(countKinds(sent)).map(([k, v]) => `${k} ${v}`).join(", ")}), ${JSON.stringify(inp.client)}`);
  say(`faults: ${JSON.stringify(inp.stats)}`);
  say(`relay refused by mode: ${JSON.stringify(inp.relay.refusedByMode)}; webhook refused by mode: ${JSON.stringify(inp.hook.refusedByMode)}`);
  writeFileSync(join(inp.work, "sent.json"), JSON.stringify(sent));
  return problems;
}

function countKinds(sent: Sent[]): Record<string, number> {
  const m: Record<string, number> = {};
  for (const s of sent) m[s.kind] = (m[s.kind] ?? 0) + 1;
  return m;
}
