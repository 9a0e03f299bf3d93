/**
 * "250 only after the message is fsynced and its record committed", seen from the kernel: the
 * real `mailgw serve` runs under strace, and the order of its system calls is checked around
 * the reply. With syncfs (the spool writer thread): the spool file renamed into place, then a
 * syncfs that returned 0, then the 250. Without it (strace makes syncfs fail with ENOSYS, as an
 * old kernel would): the file's fsync before its rename, the spool directory's and the WAL's
 * fsync after the row was written, then the 250; the archive's link fsynced (its day directory)
 * before the spool file goes. A syncfs that fails with EIO answers 451 and keeps nothing.
 * No other test sees a missing fsync: the bytes are in the page cache either way.
 */
import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { serveDir, startServe, until, type ServeProcess } from "../smtp/serve-process.ts";

const STRACE = Bun.which("strace");
const TRACED = "syncfs,fsync,fdatasync,rename,renameat,renameat2,link,linkat,unlink,unlinkat,pwrite64,write,writev,sendto,sendmsg";

/** One completed system call; `line`: where it completed in the trace (calls are ordered by it). */
interface Call {
  line: number;
  name: string;
  text: string;
  ret: string;
}

/** strace -f output as completed calls, an `<unfinished ...>` joined with its `resumed` line. */
function parseTrace(trace: string): Call[] {
  const pending = new Map<string, string>();
  const calls: Call[] = [];
  trace.split("\n").forEach((raw, line) => {
    const m = /^(\d+)\s+(.*)$/.exec(raw);
    if (!m) return;
    const [, pid = "", rest = ""] = m;
    let text = rest;
    const resumed = /^<\.\.\. \w+ resumed>(.*)$/.exec(rest);
    if (resumed) text = (pending.get(pid) ?? "") + (resumed[1] ?? "");
    else if (rest.endsWith("<unfinished ...>")) return void pending.set(pid, rest.slice(0, -"<unfinished ...>".length));
    const call = /^(\w+)\((.*)\)\s+=\s+(.*)$/s.exec(text);
    if (call) calls.push({ line, name: call[1] ?? "", text: (call[2] ?? "").trim(), ret: call[3] ?? "" });
  });
  return calls;
}

function first(calls: Call[], pred: (c: Call) => boolean, what: string): Call {
  const found = calls.find(pred);
  if (!found) throw new Error(`no ${what} in the trace`);
  return found;
}

const ok = (c: Call) => c.ret === "0" || c.ret.startsWith("0 ");

const running: ServeProcess[] = [];
afterEach(async () => {
  // A test that failed before stopAndTrace: strace, signalled, would leave serve running.
  for (const s of running.splice(0)) if (s.proc.exitCode === null) await stopServe(s, "SIGKILL");
}, 60_000);

/** serve under strace in a fresh directory; `inject`: strace's fault injection for syncfs. */
async function tracedServe(inject: string | null): Promise<{ serve: ServeProcess; dir: string; trace: string }> {
  const dir = serveDir();
  const trace = join(dir, "trace");
  const prefix = [STRACE!, "-f", "-y", "-s", "120", "-e", `trace=${TRACED}`, ...(inject ? ["-e", inject] : []), "-o", trace];
  const serve = await startServe("source", dir, {}, 60_000, prefix);
  running.push(serve);
  return { serve, dir, trace };
}

/** Signals serve itself, not strace (which would detach from it), and waits for both to end. */
async function stopServe(serve: ServeProcess, signal: NodeJS.Signals): Promise<void> {
  const straced = serve.proc.pid;
  const children = readFileSync(`/proc/${straced}/task/${straced}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
  for (const pid of children) process.kill(Number(pid), signal);
  await serve.exited();
}

/** Stops serve and returns its calls. */
async function stopAndTrace(serve: ServeProcess, trace: string): Promise<Call[]> {
  await stopServe(serve, "SIGTERM");
  return parseTrace(readFileSync(trace, "utf8"));
}

async function deliver(serve: ServeProcess, subject: string): Promise<string> {
  const c = await RawClient.connect(serve.smtpPort);
  await greet(c);
  const reply = await sendMail(c, "b@company.com", simpleMessage(subject));
  await c.cmd("QUIT");
  return reply;
}

const skip = (): boolean => {
  if (process.platform !== "linux" || !STRACE) {
    console.log("skipped: strace is not installed (the CI installs it)");
    return true;
  }
  // A container without ptrace (no CAP_SYS_PTRACE, a seccomp profile) cannot trace at all.
  const probe = Bun.spawnSync([STRACE, "-f", "-o", "/dev/null", "true"], { stderr: "pipe" });
  if (probe.exitCode === 0) return false;
  console.log(`skipped: strace cannot trace here (${probe.stderr.toString().trim().slice(0, 200)})`);
  return true;
};

describe("durability before 250, as system calls (strace)", () => {
  test("with syncfs: the spool file renamed into place, a syncfs returning 0, then the 250", async () => {
    if (skip()) return;
    const { serve, trace } = await tracedServe(null);
    const reply = await deliver(serve, "traced");
    const id = /^250 2\.0\.0 Queued as (\S+)$/.exec(reply)?.[1] ?? "";
    expect(id).not.toBe("");
    const calls = await stopAndTrace(serve, trace);
    const answered = first(calls, (c) => /^(sendto|write|writev|sendmsg)$/.test(c.name) && c.text.includes(`Queued as ${id}`), "250 reply");
    const renamed = first(calls, (c) => c.name.startsWith("rename") && c.text.includes(`${id}.tmp`) && ok(c), "rename of the spool file");
    const synced = first(calls, (c) => c.name === "syncfs" && ok(c) && c.line > renamed.line, "syncfs after the rename");
    expect(renamed.line).toBeLessThan(answered.line);
    expect(synced.line).toBeLessThan(answered.line);
    // The message's row went into the WAL before that syncfs, so the syncfs covered it too.
    first(calls, (c) => c.name === "pwrite64" && c.text.includes("-wal>") && c.line < synced.line && c.line > renamed.line - 50, "WAL write");
  }, 90_000);

  test("without syncfs (ENOSYS): fsync of the file before its rename, of the directory and the WAL before the 250; the archive link fsynced before the spool file goes", async () => {
    if (skip()) return;
    const { serve, dir, trace } = await tracedServe("inject=syncfs:error=ENOSYS");
    expect(serve.logs.some((l) => l.msg === "spool files fsynced one by one (no syncfs)")).toBe(true);
    const reply = await deliver(serve, "traced without syncfs");
    const id = /^250 2\.0\.0 Queued as (\S+)$/.exec(reply)?.[1] ?? "";
    expect(id).not.toBe("");
    const spooled = join(dir, "data", "spool", `${id}.eml`);
    await until("the archive took the message", async () => !existsSync(spooled) && readdirSync(join(dir, "data", "archive"), { recursive: true }).some((f) => String(f).endsWith(`${id}.eml`)));
    const calls = await stopAndTrace(serve, trace);
    const answered = first(calls, (c) => /^(sendto|write|writev|sendmsg)$/.test(c.name) && c.text.includes(`Queued as ${id}`), "250 reply");
    const fileSynced = first(calls, (c) => /^f(data)?sync$/.test(c.name) && c.text.includes(`${id}.tmp>`) && ok(c), "fsync of the spool file");
    const renamed = first(calls, (c) => c.name.startsWith("rename") && c.text.includes(`${id}.tmp`) && c.text.includes(`spool/${id}.eml`) && ok(c), "rename into the spool");
    expect(fileSynced.line).toBeLessThan(renamed.line);
    const dirSynced = first(calls, (c) => /^f(data)?sync$/.test(c.name) && c.text.endsWith("/data/spool>") && ok(c) && c.line > renamed.line, "fsync of the spool directory");
    const walSynced = first(calls, (c) => /^f(data)?sync$/.test(c.name) && c.text.includes("-wal>") && ok(c) && c.line > renamed.line, "fsync of the WAL");
    first(calls, (c) => c.name === "pwrite64" && c.text.includes("-wal>") && c.line < walSynced.line && c.line > fileSynced.line - 200, "the row's WAL write");
    expect(dirSynced.line).toBeLessThan(answered.line);
    expect(walSynced.line).toBeLessThan(answered.line);
    // After the 250: archived by a hard link, made durable before the spool's name is removed.
    const linked = first(calls, (c) => c.name.startsWith("link") && c.text.includes(`spool/${id}.eml`) && ok(c), "link into the archive");
    const unlinked = first(calls, (c) => c.name.startsWith("unlink") && c.text.includes(`spool/${id}.eml`) && ok(c), "unlink of the spool file");
    const day = /archive\/(\d{4}-\d\d-\d\d)\//.exec(linked.text)?.[1];
    const daySynced = first(calls, (c) => /^f(data)?sync$/.test(c.name) && c.text.endsWith(`/archive/${day}>`) && ok(c) && c.line > linked.line, "fsync of the archive day");
    expect(daySynced.line).toBeLessThan(unlinked.line);
  }, 90_000);

  test("a syncfs that fails (EIO) → 451 4.3.0, nothing kept, serve goes on", async () => {
    if (skip()) return;
    // The first syncfs is the start-up probe; every later one fails.
    const { serve, dir, trace } = await tracedServe("inject=syncfs:error=EIO:when=2+");
    expect(await deliver(serve, "lost disk")).toMatch(/^451 4\.3\.0 /);
    expect(await deliver(serve, "still lost")).toMatch(/^451 4\.3\.0 /);
    expect(serve.proc.exitCode).toBeNull();
    // Every message still gets 451: /healthz must keep saying so. Its write probe (a file in the
    // archive, no sync) went through and said 200, with syncfs failing for every message.
    for (let i = 0; i < 2; i++) {
      const res = await fetch(new URL("/healthz", serve.httpUrl));
      const body = (await res.json()) as { checks: { dataDir: { reason?: string } } };
      expect({ status: res.status, reason: body.checks.dataDir.reason }).toEqual({ status: 503, reason: "the last message file (spool or archive) could not be written" });
    }
    await stopAndTrace(serve, trace);
    const db = new Database(join(dir, "data", "mail-gateway.db"), { readonly: true });
    try {
      expect(db.query<{ n: number }, []>("SELECT count(*) AS n FROM messages").get()?.n).toBe(0);
    } finally {
      db.close();
    }
    const kept = readdirSync(join(dir, "data"), { recursive: true }).filter((f) => String(f).endsWith(".eml"));
    expect(kept).toEqual([]);
  }, 90_000);
});
