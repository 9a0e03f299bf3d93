/**
 * `mailgw serve` start-up failures (SPEC §1/§2): exit 1 with ONE stderr line naming the
 * variable or file, no stack trace — bad values (env and flags), TLS on with a missing key,
 * a missing rules file, a port already in use, a missing --env-file. Run from source.
 */
import { describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { copyBinaryToTemp, findTool, runBinary } from "../packaging/binary.ts";
import { withTmpfs } from "../helpers/tmpfs.ts";
import { openDatabase } from "../../src/store/db.ts";
import { greet, RawClient, sendMail } from "../smtp/helpers.ts";
import { runServeOnce, serveCommand, serveDir, startServe } from "../smtp/serve-process.ts";

function oneLine(stderr: string): string {
  const lines = stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  expect(stderr).not.toContain("    at ");
  return lines[0] ?? "";
}

describe("mailgw serve refuses bad configuration with exit 1 and one line", () => {
  test("SMTP and HTTP on one port: refused before anything binds, naming both", async () => {
    const run = await runServeOnce("source", serveDir(), {}, ["--port", "2600", "--http-port", "2600"]);
    expect(run.exitCode).toBe(1);
    expect(oneLine(run.stderr)).toStartWith("mailgw: SMTP_PORT and HTTP_PORT are both 2600 (on 0.0.0.0 and 127.0.0.1)");
  });

  test("bad variable values, from the environment and from flags", async () => {
    const dir = serveDir();
    const env = await runServeOnce("source", dir, { RATE_LIMIT_MAX: "lots" });
    expect(env.exitCode).toBe(1);
    expect(oneLine(env.stderr)).toContain("RATE_LIMIT_MAX=lots");
    const flag = await runServeOnce("source", dir, {}, ["--port", "99999"]);
    expect(flag.exitCode).toBe(1);
    // Named as typed, with the variable it sets.
    expect(oneLine(flag.stderr)).toBe("mailgw: --port 99999 (SMTP_PORT) is not an integer between 0 and 65535");
    const relay = await runServeOnce("source", dir, { RELAY_SMTP_HOST: "smtp.example.com:587" });
    expect(relay.exitCode).toBe(1);
    expect(oneLine(relay.stderr)).toBe("mailgw: RELAY_SMTP_HOST=smtp.example.com:587 has a port in it: set RELAY_SMTP_HOST=smtp.example.com and RELAY_SMTP_PORT=587 (now 587)");
    const cidr = await runServeOnce("source", dir, { SMTP_ALLOWED_IPS: "10.0.0.0/33" });
    expect(cidr.exitCode).toBe(1);
    expect(oneLine(cidr.stderr)).toContain("SMTP_ALLOWED_IPS");
    // Refused at start, not at bind time with an unrelated errno (it was EEXIST).
    const host = await runServeOnce("source", dir, { HTTP_HOST: "999.1.1.1" });
    expect(host.exitCode).toBe(1);
    expect(oneLine(host.stderr)).toBe("mailgw: HTTP_HOST=999.1.1.1 is not an IP address or host name (e.g. 0.0.0.0, ::, 127.0.0.1, localhost)");
    // A token with a space could never be sent as a Bearer token (every scrape: 401); the
    // line must not repeat the secret.
    const token = await runServeOnce("source", dir, { STATS_TOKEN: "tok en" });
    expect(token.exitCode).toBe(1);
    const tokenLine = oneLine(token.stderr);
    expect(tokenLine).toContain("STATS_TOKEN has a space");
    expect(tokenLine).not.toContain("tok en");
    // Decimal only: Number() would have read 0x10 as 16 MB.
    const hex = await runServeOnce("source", dir, { MAX_MESSAGE_SIZE_MB: "0x10" });
    expect(hex.exitCode).toBe(1);
    expect(oneLine(hex.stderr)).toBe("mailgw: MAX_MESSAGE_SIZE_MB=0x10 is not a number between 0.001 and 1024");
  });

  test("a CIDR with host bits set: serve starts, and its log warns naming both readings", async () => {
    const s = await startServe("source", serveDir(), { SMTP_ALLOWED_IPS: "127.0.0.1/8" });
    try {
      const warned = await s.waitForLog((l) => l.level === "warn" && String(l.msg).startsWith("SMTP_ALLOWED_IPS:"));
      expect(warned.msg).toBe("SMTP_ALLOWED_IPS: 127.0.0.1/8 has host bits set and means the whole network 127.0.0.0/8; write 127.0.0.0/8 if that is meant, or 127.0.0.1/32 for the one address");
    } finally {
      await s.stop();
    }
  });

  test("DATABASE_URL at a file that is not SQLite: exit 1 naming the file and the variable, file untouched", async () => {
    const dir = serveDir();
    const bad = join(dir, "notes.db");
    writeFileSync(bad, "not a database\n");
    const r = await runServeOnce("source", dir, { DATABASE_URL: `file:${bad}` });
    expect(r.exitCode).toBe(1);
    expect(oneLine(r.stderr)).toBe(`mailgw: database ${bad} (DATABASE_URL) cannot be used: file is not a database; point DATABASE_URL at mailgw's database, or at a new file`);
    expect(readFileSync(bad, "utf8")).toBe("not a database\n");
  });

  // Another program's database: mailgw's tables were added to it (and its journal mode changed)
  // without a word, and `queue list` called it "an older schema" to be upgraded by serve.
  test("DATABASE_URL at another program's SQLite database: exit 1 naming its tables, file untouched; an empty file is a new database", async () => {
    const dir = serveDir();
    const other = join(dir, "crm.db");
    const db = new Database(other);
    db.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ann')");
    db.close();
    const before = readFileSync(other);
    const r = await runServeOnce("source", dir, { DATABASE_URL: `file:${other}` });
    expect(r.exitCode).toBe(1);
    expect(oneLine(r.stderr)).toBe(
      `mailgw: database ${other} (DATABASE_URL) is not mailgw's: it has tables of another program (users) and no mailgw schema; point DATABASE_URL at mailgw's database, or at a new file`,
    );
    expect(readFileSync(other).equals(before)).toBe(true);
    const list = Bun.spawnSync([...serveCommand("source").slice(0, -1), "queue", "list", "--database-url", `file:${other}`], { cwd: dir, env: { PATH: process.env.PATH ?? "" } });
    expect(list.exitCode).toBe(1);
    expect(list.stderr.toString()).toContain("is not mailgw's");
    // An empty file (touch) is a new database.
    const empty = join(dir, "empty.db");
    writeFileSync(empty, "");
    const ok = await startServe("source", dir, { DATABASE_URL: `file:${empty}` });
    expect(await ok.stop()).toBe(0);
  });

  test("DATABASE_URL with SQLite URI parameters or a host: exit 1 naming the form to write, no new database made", async () => {
    const dir = serveDir();
    // Taken as part of the file name, these opened a new, empty database beside the real one
    // (or under the working directory), and the queue's spool files were moved aside as rowless.
    const query = await runServeOnce("source", dir, { DATABASE_URL: `file:${join(dir, "data", "mail-gateway.db")}?mode=rwc` });
    expect(query.exitCode).toBe(1);
    expect(oneLine(query.stderr)).toBe(
      `mailgw: DATABASE_URL=file:${join(dir, "data", "mail-gateway.db")}?mode=rwc has a query string (?mode=rwc): mailgw opens the file itself and takes no parameters; write file:${join(dir, "data", "mail-gateway.db")}`,
    );
    const host = await runServeOnce("source", dir, { DATABASE_URL: "file://var/lib/mailgw/mail-gateway.db" });
    expect(host.exitCode).toBe(1);
    expect(oneLine(host.stderr)).toBe(
      "mailgw: DATABASE_URL=file://var/lib/mailgw/mail-gateway.db names a host (var): write file:///var/lib/mailgw/mail-gateway.db or file:/var/lib/mailgw/mail-gateway.db for an absolute path, file:./var/lib/mailgw/mail-gateway.db for one under the working directory",
    );
    expect(readdirSync(dir).filter((f) => f !== ".bun").sort()).toEqual(["rules.yaml"]); // no data/, no var/
    // A local host is the machine itself (RFC 8089).
    const local = await startServe("source", dir, { DATABASE_URL: `file://localhost${join(dir, "local.db")}` });
    expect(await local.stop()).toBe(0);
    expect(readdirSync(dir)).toContain("local.db");
  });

  test("a new database beside a spool of accepted messages (upgrade from a database in ./data of the working directory): exit 1, spool untouched", async () => {
    const dir = serveDir();
    writeFileSync(join(dir, "rules.yaml"), "domains: [company.com]\ndefault: { action: forward, forward_to: ops@elsewhere.example }\n");
    // As an older serve ran it: DATA_DIR elsewhere, the database in ./data of the working directory.
    const dataDir = join(dir, "var", "data");
    const oldDb = join(dir, "data", "mail-gateway.db");
    const old = await startServe("source", dir, { DATA_DIR: dataDir, DATABASE_URL: `file:${oldDb}` });
    const c = await RawClient.connect(old.smtpPort);
    await greet(c);
    const reply = await sendMail(c, "a@company.com", "Subject: held\r\n\r\nno relay yet\r\n");
    c.end();
    expect(reply).toStartWith("250 ");
    expect(await old.stop()).toBe(0);
    const held = readdirSync(join(dataDir, "spool")).filter((f) => f.endsWith(".eml"));
    expect(held).toHaveLength(1);

    // Now DATABASE_URL unset means DATA_DIR/mail-gateway.db: a database that does not exist.
    const r = await runServeOnce("source", dir, { DATA_DIR: dataDir });
    expect(r.exitCode).toBe(1);
    expect(oneLine(r.stderr)).toBe(
      `mailgw: database ${join(dataDir, "mail-gateway.db")} (DATABASE_URL) does not exist, but ${join(dataDir, "spool")} holds 1 accepted message(s) recorded in another database: ` +
        "point DATABASE_URL at it (with DATABASE_URL unset, older versions kept it in ./data/mail-gateway.db of the directory they ran in); to start on a new database, move those .eml files out of the spool first",
    );
    expect(readdirSync(join(dataDir, "spool")).filter((f) => f.endsWith(".eml"))).toEqual(held);
    expect(readdirSync(dataDir)).not.toContain("mail-gateway.db");
    // Pointed at its database, the held forward is still in the queue.
    const again = await startServe("source", dir, { DATA_DIR: dataDir, DATABASE_URL: `file:${oldDb}` });
    await again.waitForLog((l) => l.msg === "spool recovered" && l.orphaned === 0);
    expect(await again.stop()).toBe(0);
    const db = new Database(oldDb, { readonly: true });
    expect(db.query<{ state: string }, []>("SELECT state FROM deliveries").all()).toEqual([{ state: "held" }]);
    db.close();
  });

  test("the database of a queue with a DATA_DIR that has no spool (a typo, a manual run beside the unit): exit 1, the queue untouched", async () => {
    const dir = serveDir();
    writeFileSync(join(dir, "rules.yaml"), "domains: [company.com]\ndefault: { action: forward, forward_to: ops@elsewhere.example }\n");
    const db = join(dir, "data", "mail-gateway.db");
    const first = await startServe("source", dir);
    const c = await RawClient.connect(first.smtpPort);
    await greet(c);
    expect(await sendMail(c, "a@company.com", "Subject: held\r\n\r\nno relay yet\r\n")).toStartWith("250 ");
    c.end();
    expect(await first.stop()).toBe(0);

    const wrong = join(dir, "dta");
    const r = await runServeOnce("source", dir, { DATA_DIR: wrong, DATABASE_URL: `file:${db}` });
    expect(r.exitCode).toBe(1);
    expect(oneLine(r.stderr)).toBe(
      `mailgw: DATA_DIR ${wrong} has no spool directory, but database ${db} (DATABASE_URL) has accepted messages whose files should be in one: ` +
        `point DATA_DIR at the data dir this database was used with; if that spool is lost for good, mkdir ${join(wrong, "spool")} and start again (their deliveries then fail as "spool file missing")`,
    );
    const check = new Database(db, { readonly: true });
    expect(check.query<{ state: string }, []>("SELECT state FROM deliveries").all()).toEqual([{ state: "held" }]);
    check.close();
  });

  test("SMTP_TLS_ENABLED=true with an unreadable key names the file", async () => {
    const dir = serveDir();
    const missing = join(dir, "missing-key.pem");
    const r = await runServeOnce("source", dir, { SMTP_TLS_ENABLED: "true", SMTP_TLS_KEY: missing, SMTP_TLS_CERT: join(dir, "rules.yaml") });
    expect(r.exitCode).toBe(1);
    expect(oneLine(r.stderr)).toContain(`SMTP_TLS_KEY=${missing}`);
  });

  test("only one of SMTP_TLS_KEY / SMTP_TLS_CERT set: exit 1 naming both, not a silent start without STARTTLS", async () => {
    const dir = serveDir();
    const r = await runServeOnce("source", dir, { SMTP_TLS_KEY: join(dir, "key.pem") });
    expect(r.exitCode).toBe(1);
    expect(oneLine(r.stderr)).toBe("mailgw: SMTP_TLS_KEY is set but SMTP_TLS_CERT is not: set both to offer STARTTLS (or SMTP_TLS_ENABLED=false to run without it)");
    const cert = await runServeOnce("source", dir, { SMTP_TLS_CERT: join(dir, "cert.pem") });
    expect(cert.exitCode).toBe(1);
    expect(oneLine(cert.stderr)).toContain("SMTP_TLS_CERT is set but SMTP_TLS_KEY is not");
  });

  test("SMTP_TLS_REQUIRED=true without a key and certificate: exit 1 naming the variable (it would refuse every MAIL)", async () => {
    const dir = serveDir();
    const r = await runServeOnce("source", dir, { SMTP_TLS_REQUIRED: "true" });
    expect(r.exitCode).toBe(1);
    expect(oneLine(r.stderr)).toContain("SMTP_TLS_REQUIRED=true needs STARTTLS");
  });

  test("SMTP_HOST not on this machine: one start-up error naming it, not a listener error logged before it", async () => {
    const dir = serveDir();
    try {
      const r = await runServeOnce("source", dir, { SMTP_HOST: "192.0.2.1", SMTP_PORT: "2525" });
      expect(r.exitCode).toBe(1);
      expect(oneLine(r.stderr)).toBe("mailgw: cannot listen on SMTP_HOST=192.0.2.1 SMTP_PORT=2525: EADDRNOTAVAIL (SMTP_HOST is not an address of this machine)");
      expect(r.stdout).not.toContain("SMTP listener error");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("SMTP_PORT=25 without the capability (env file edited, install not re-run): the line says how to fix it", async () => {
    const setpriv = findTool("setpriv");
    if (!setpriv || process.getuid?.() !== 0) {
      console.warn("skip: needs setpriv (util-linux) and a root test run to drop to uid 65534");
      return;
    }
    const dir = serveDir();
    chmodSync(dir, 0o777); // the unprivileged user creates ./data there
    const binary = copyBinaryToTemp();
    try {
      const wrapper = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"];
      const env = { SMTP_HOST: "127.0.0.1", SMTP_PORT: "25", HTTP_PORT: "0", LOG_FORMAT: "json" };
      const r = await runBinary(binary.bin, ["serve"], { cwd: dir, env, wrapper, timeoutMs: 15_000 });
      expect(r.exitCode).toBe(1);
      expect(oneLine(r.stderr)).toBe(
        "mailgw: cannot listen on SMTP_HOST=127.0.0.1 SMTP_PORT=25: EACCES (a port below 1024 needs CAP_NET_BIND_SERVICE: " +
          "run `mailgw systemd install` again after changing SMTP_PORT, or keep 2525 behind nginx or a 25→2525 redirect)",
      );
    } finally {
      binary.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // `chmod 700 /etc/mailgw` for the env file's secrets, under DynamicUser: the rules file is
  // there but out of reach, and serve said "does not exist: create it".
  test("RULES_FILE missing, or out of this user's reach: each said as it is", async () => {
    const dir = serveDir();
    const missing = await runServeOnce("source", dir, { RULES_FILE: join(dir, "nope.yaml") });
    expect(missing.exitCode).toBe(1);
    expect(oneLine(missing.stderr)).toBe(`mailgw: RULES_FILE ${join(dir, "nope.yaml")} does not exist: create it (see README) or set RULES_FILE`);
    const setpriv = findTool("setpriv");
    if (!setpriv || process.getuid?.() !== 0) {
      console.warn("skip (unreachable part): needs setpriv (util-linux) and a root test run to drop to uid 65534");
      return;
    }
    const fresh = serveDir(); // the run above made data/ as root
    chmodSync(fresh, 0o777);
    const conf = join(fresh, "conf");
    mkdirSync(conf, { mode: 0o700 });
    writeFileSync(join(conf, "rules.yaml"), readFileSync(join(fresh, "rules.yaml")));
    const binary = copyBinaryToTemp();
    try {
      const wrapper = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"];
      const env = { SMTP_HOST: "127.0.0.1", SMTP_PORT: "0", HTTP_PORT: "0", LOG_FORMAT: "json", RULES_FILE: join(conf, "rules.yaml") };
      const r = await runBinary(binary.bin, ["serve"], { cwd: fresh, env, wrapper, timeoutMs: 15_000 });
      expect(r.exitCode).toBe(1);
      expect(oneLine(r.stderr)).toBe(
        `mailgw: RULES_FILE ${join(conf, "rules.yaml")} cannot be read by this user (EACCES): make it and its directories readable by the user mailgw runs as`,
      );
    } finally {
      binary.cleanup();
    }
  });

  test("a restored database owned by root (README: Backups): exit 1 naming the file and the fix, not a bare SQLite error", async () => {
    const setpriv = findTool("setpriv");
    if (!setpriv || process.getuid?.() !== 0) {
      console.warn("skip: needs setpriv (util-linux) and a root test run to drop to uid 65534");
      return;
    }
    const dir = serveDir();
    chmodSync(dir, 0o777);
    const binary = copyBinaryToTemp();
    try {
      const wrapper = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"];
      const env = { SMTP_HOST: "127.0.0.1", SMTP_PORT: "0", HTTP_PORT: "0", LOG_FORMAT: "json" };
      const data = join(dir, "data");
      // The service user's data dir holding root's copy of the database (sqlite3 .backup, then cp).
      mkdirSync(data);
      chownSync(data, 65534, 65534);
      openDatabase(join(data, "mail-gateway.db")).close(); // a mailgw database, made by root
      const r = await runBinary(binary.bin, ["serve"], { cwd: dir, env, wrapper, timeoutMs: 15_000 });
      expect(r.exitCode).toBe(1);
      expect(oneLine(r.stderr)).toBe(
        `mailgw: database file ${join(data, "mail-gateway.db")} (DATABASE_URL) is not writable by this user (EACCES): ` +
          `give it to the user mailgw runs as, e.g. chown --reference=${data} ${join(data, "mail-gateway.db")}`,
      );
    } finally {
      binary.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a data dir given to the service user without -R (spool/ and archive/ still root's): exit 1 naming the directory and the fix, not a 451 for every message", async () => {
    const setpriv = findTool("setpriv");
    if (!setpriv || process.getuid?.() !== 0) {
      console.warn("skip: needs setpriv (util-linux) and a root test run to drop to uid 65534");
      return;
    }
    const dir = serveDir();
    chmodSync(dir, 0o777);
    const binary = copyBinaryToTemp();
    try {
      const wrapper = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"];
      const env = { SMTP_HOST: "127.0.0.1", SMTP_PORT: "0", HTTP_PORT: "0", LOG_FORMAT: "json" };
      const data = join(dir, "data");
      // As root's `mkdir -p` or a restore by root leaves them (0755), then `chown nobody data`:
      // serve could read them, so it started, and then answered 451 to every message.
      for (const d of [data, join(data, "spool"), join(data, "spool", "orphaned"), join(data, "archive")]) mkdirSync(d, { mode: 0o755 });
      chownSync(data, 65534, 65534);
      const r = await runBinary(binary.bin, ["serve"], { cwd: dir, env, wrapper, timeoutMs: 15_000 });
      expect(r.exitCode).toBe(1);
      expect(oneLine(r.stderr)).toBe(
        `mailgw: ${join(data, "spool")} is not writable by this user (EACCES), so every message would be answered 451: ` +
          `give DATA_DIR to the user mailgw runs as, e.g. chown -R 65534:65534 ${data}`,
      );
    } finally {
      binary.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a data dir on a read-only file system (spool/, archive/ and serve.lock left by an earlier run): exit 1 naming the directory and EROFS, not a 451 for every message", async () => {
    const dir = serveDir();
    const binary = copyBinaryToTemp();
    try {
      await withTmpfs("mailgw-ro-data-", 4, async (mnt) => {
        const data = join(mnt, "data");
        for (const d of [data, join(data, "spool"), join(data, "spool", "orphaned"), join(data, "archive")]) mkdirSync(d);
        writeFileSync(join(data, "serve.lock"), "");
        expect(spawnSync("mount", ["-o", "remount,ro", mnt]).status).toBe(0);
        // The database on a writable disk: only DATA_DIR is read-only. serve started, /healthz said
        // "unhealthy", and every message was answered 451 (EROFS on spool/<id>.tmp).
        const env = { SMTP_HOST: "127.0.0.1", SMTP_PORT: "0", HTTP_PORT: "0", LOG_FORMAT: "json", DATA_DIR: data, DATABASE_URL: `file:${join(dir, "mail-gateway.db")}` };
        const r = await runBinary(binary.bin, ["serve"], { cwd: dir, env, timeoutMs: 15_000 });
        expect(r.exitCode).toBe(1);
        expect(oneLine(r.stderr)).toBe(
          `mailgw: ${join(data, "spool")} is not writable (EROFS: read-only file system), so every message would be answered 451: ` +
            "remount it read-write (dmesg says why it went read-only) or point DATA_DIR at a writable directory " +
            "(under systemd, run `mailgw systemd install` again after moving DATA_DIR, so the unit lets serve write there)",
        );
      });
    } finally {
      binary.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 40_000);

  test("missing rules file, port in use, missing --env-file", async () => {
    const dir = serveDir();
    const rules = await runServeOnce("source", dir, {}, ["--rules", "nope.yaml"]);
    expect(rules.exitCode).toBe(1);
    expect(oneLine(rules.stderr)).toContain("nope.yaml");

    const blocker = createServer();
    await new Promise<void>((ok) => blocker.listen(0, "127.0.0.1", ok));
    const port = (blocker.address() as { port: number }).port;
    const busy = await runServeOnce("source", dir, { SMTP_HOST: "127.0.0.1", SMTP_PORT: String(port) });
    blocker.close();
    expect(busy.exitCode).toBe(1);
    expect(oneLine(busy.stderr)).toContain(`SMTP_PORT=${port}`);

    const envFile = await runServeOnce("source", dir, {}, ["--env-file", "absent.env"]);
    expect(envFile.exitCode).toBe(1);
    expect(oneLine(envFile.stderr)).toContain("absent.env");
    rmSync(dir, { recursive: true, force: true });
  });
});

test("LOG_LEVEL=debug in the --env-file shows the stack trace of a start-up error", async () => {
  const dir = serveDir();
  writeFileSync(join(dir, "debug.env"), "LOG_LEVEL=debug\nRATE_LIMIT_MAX=lots\n");
  const r = await runServeOnce("source", dir, {}, ["--env-file", "debug.env"]);
  expect(r.exitCode).toBe(1);
  expect(r.stderr.split("\n")[0]).toContain("RATE_LIMIT_MAX=lots");
  expect(r.stderr).toContain("    at ");
  rmSync(dir, { recursive: true, force: true });
});

describe("mailgw serve warns about settings it does not know", () => {
  test("a misspelt variable in .env is named at start, with the name it is a typo of", async () => {
    const dir = serveDir();
    writeFileSync(join(dir, ".env"), "SMTP_TLS_CRT=/etc/ssl/cert.pem\n");
    const serve = await startServe("source", dir, { RELAY_SMTP_HSOT: "smtp.example.net" });
    try {
      const fileWarning = await serve.waitForLog((l) => String(l.msg).includes("SMTP_TLS_CRT"));
      expect(fileWarning.msg).toBe(`${join(dir, ".env")}: unknown variable SMTP_TLS_CRT (did you mean SMTP_TLS_CERT?); it is ignored`);
      expect(fileWarning.level).toBe("warn");
      const envWarning = await serve.waitForLog((l) => String(l.msg).includes("RELAY_SMTP_HSOT"));
      expect(envWarning.msg).toBe("environment: unknown variable RELAY_SMTP_HSOT (did you mean RELAY_SMTP_HOST?); it is ignored");
    } finally {
      expect(await serve.stop()).toBe(0);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("mailgw serve keeps mail from other local users", () => {
  // Under the usual umask 022 the database and the archive's day directories came out 0644/0755.
  test("database, WAL and archive are not readable by others, whatever the umask 022 of the shell", async () => {
    const dir = serveDir();
    const serve = await startServe("source", dir);
    try {
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      expect(await sendMail(c)).toMatch(/^250 2\.0\.0 Queued as /);
      await c.cmd("QUIT");
      const data = join(dir, "data");
      const day = readdirSync(join(data, "archive"))[0] ?? "";
      const archived = join(data, "archive", day, readdirSync(join(data, "archive", day))[0] ?? "");
      for (const path of [join(data, "mail-gateway.db"), join(data, "mail-gateway.db-wal"), join(data, "archive"), join(data, "archive", day), archived, join(data, "spool")]) {
        expect({ path, other: statSync(path).mode & 0o007 }).toEqual({ path, other: 0 });
      }
    } finally {
      expect(await serve.stop()).toBe(0);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
