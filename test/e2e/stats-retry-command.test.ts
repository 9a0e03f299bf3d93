/**
 * The retry command /stats shows for a failed delivery works as shown from any directory: with
 * serve's data directory (and its own database) named, quoted for the shell. Without them, an
 * admin running it in a shell elsewhere (a systemd unit's variables come from its EnvironmentFile)
 * got `no database at ./data/…`. The database is named by its path, not a file: URL, in which a
 * `#` or `?` of the path would be refused. Real serve from source, a webhook receiver answering 400.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { StatsSnapshot } from "../../src/http/stats-data.ts";
import { RawClient, greet, sendMail } from "../smtp/helpers.ts";
import { mailgwQueue, serveDir, startServe, until, type ServeProcess } from "../smtp/serve-process.ts";

let serve: ServeProcess | null = null;
let receiver: ReturnType<typeof Bun.serve> | null = null;
const dirs: string[] = [];
afterEach(async () => {
  await serve?.stop();
  serve = null;
  void receiver?.stop(true);
  receiver = null;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

test("the failed delivery's retry command names serve's data dir and database, and runs from another directory", async () => {
  let posts = 0;
  receiver = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => (posts++, new Response("no such hook", { status: 400 })) });
  const dir = serveDir();
  dirs.push(dir);
  writeFileSync(join(dir, "rules.yaml"), `domains: [company.com]
default: { action: webhook, url: "http://127.0.0.1:${receiver.port}/services/T0/B0/s3cret-token", category: default }
rules: []
`);
  const dataDir = join(dir, "mail data");
  // A `#` (or `?`) is fine in a bare path; in a file: URL, `mailgw queue` refuses it as a fragment.
  mkdirSync(join(dir, "db#1"));
  const database = join(dir, "db#1", "gateway.db");
  serve = await startServe("source", dir, { DATA_DIR: dataDir, DATABASE_URL: database });
  const c = await RawClient.connect(serve.smtpPort);
  await greet(c);
  expect(await sendMail(c)).toStartWith("250 2.0.0");
  let stats: StatsSnapshot | null = null;
  await until("the delivery failed", async () => {
    stats = (await (await fetch(`${serve?.httpUrl}stats.json`)).json()) as StatsSnapshot;
    return stats.failedDeliveries.length === 1;
  }, 15_000);
  const failed = (stats as StatsSnapshot | null)?.failedDeliveries[0];
  // The receiver's secret is in its path (as Slack's and Discord's): not on the page, not in the log.
  expect(failed?.target).toBe(`http://127.0.0.1:${receiver.port}/services/…`);
  await serve.waitForLog((l) => l.msg === "failed" && l.kind === "webhook");
  expect(JSON.stringify(serve.logs)).not.toContain("s3cret-token");
  expect(await (await fetch(`${serve.httpUrl}stats`)).text()).not.toContain("s3cret-token");
  expect(failed?.retryCommand).toBe(`mailgw queue retry ${failed?.id} --data-dir '${dataDir}' --database-url '${database}'`);
  // As the admin would: the shell splits it, from a directory with no data of its own.
  const elsewhere = join(tmpdir(), `mailgw-elsewhere-${process.pid}`);
  mkdirSync(elsewhere, { recursive: true });
  dirs.push(elsewhere);
  const argv = (await Bun.$`printf '%s\n' ${{ raw: (failed?.retryCommand ?? "").replace(/^mailgw queue /, "") }}`.text()).trim().split("\n");
  const r = await mailgwQueue(elsewhere, ...argv);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  await until("posted again", async () => posts >= 2, 15_000);
  const listed = await mailgwQueue(elsewhere, "list", "--data-dir", dataDir, "--database-url", database);
  expect(listed.stdout).toContain("/services/…");
  expect(listed.stdout).not.toContain("s3cret-token");
});
