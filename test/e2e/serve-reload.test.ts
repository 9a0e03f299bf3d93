/**
 * The RCPT domain check follows hot-reloaded rules in the real `mailgw serve`: a domain added
 * to rules.yaml is accepted after SIGHUP (and by the file watcher) without dropping an open
 * session; an invalid rules file is refused and the last good domains stay in force. A relay
 * setting changed in .env is read again on SIGHUP when serve runs the way `npm start` runs it.
 */
import { describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, renameSync, rmSync, symlinkSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { RULES_YAML, serveDir, startServe } from "../smtp/serve-process.ts";

const relayEnv = (port: number): string => `RELAY_SMTP_HOST=127.0.0.1\nRELAY_SMTP_PORT=${port}\nRELAY_SMTP_SECURE=none\n`;

describe("mailgw serve domains follow rules reloads", () => {
  test("SIGHUP adds a domain for the next RCPT in an open session; invalid file keeps the old", async () => {
    const dir = serveDir();
    const serve = await startServe("source", dir);
    try {
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      await c.cmd("MAIL FROM:<a@sender.example>");
      expect(await c.cmd("RCPT TO:<x@new.example>")).toMatch(/^550 5\.7\.1 /);
      writeFileSync(join(dir, "rules.yaml"), RULES_YAML.replace("domains: [company.com]", "domains: [company.com, new.example]"));
      serve.proc.kill("SIGHUP");
      await serve.waitForLog((l) => l.msg === "rules reloaded");
      expect(await c.cmd("RCPT TO:<x@new.example>")).toStartWith("250");

      writeFileSync(join(dir, "rules.yaml"), "domains: [oops\n");
      serve.proc.kill("SIGHUP");
      await serve.waitForLog((l) => String(l.msg).startsWith("rules reload refused"));
      expect(await c.cmd("RCPT TO:<y@new.example>")).toStartWith("250");
      expect(await c.cmd("RCPT TO:<y@other.example>")).toMatch(/^550 5\.7\.1 /);
      c.end();
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  }, 30_000);

  test("a FIFO, /dev/zero or an oversized file at the rules path is refused at once, without hanging or filling memory; the next good file loads", async () => {
    const dir = serveDir();
    const serve = await startServe("source", dir);
    const rules = join(dir, "rules.yaml");
    try {
      const refused = async (make: () => void, reason: string): Promise<void> => {
        rmSync(rules);
        make();
        serve.proc.kill("SIGHUP");
        const line = await serve.waitForLog((l) => String(l.msg).startsWith("rules reload refused") && JSON.stringify(l).includes(reason), 10_000);
        expect(line).toBeDefined();
      };
      // A FIFO held the reload's read in a pool thread for good: every later reload was silently lost.
      await refused(() => execFileSync("mkfifo", [rules]), "not a regular file");
      await refused(() => symlinkSync("/dev/zero", rules), "not a regular file");
      // Read whole before its size was checked: a 1.2 GB file cost 2.7 GB of RSS. 64 MB here.
      await refused(() => truncateSync((writeFileSync(rules, ""), rules), 64 * 1024 * 1024), "larger than 1048576 bytes");
      rmSync(rules);
      writeFileSync(rules, RULES_YAML.replace("domains: [company.com]", "domains: [company.com, new.example]"));
      serve.proc.kill("SIGHUP");
      await serve.waitForLog((l) => l.msg === "rules reloaded");
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      await c.cmd("MAIL FROM:<a@sender.example>");
      expect(await c.cmd("RCPT TO:<x@new.example>")).toStartWith("250");
      c.end();
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  }, 60_000);

  // A deployed configuration directory swapped as a whole (rsync, git checkout, Ansible), with
  // no SIGHUP: the watch must follow the new directory; a file listing no domains is refused.
  test("rules in a directory replaced with mv are picked up, later edits too; a reload losing every domain is refused", async () => {
    const dir = serveDir();
    const conf = join(dir, "conf");
    mkdirSync(conf);
    writeFileSync(join(conf, "rules.yaml"), RULES_YAML);
    const serve = await startServe("source", dir, { RULES_FILE: join(conf, "rules.yaml") });
    const rcpt = async (to: string): Promise<string> => {
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      await c.cmd("MAIL FROM:<a@sender.example>");
      const reply = await c.cmd(`RCPT TO:<${to}>`);
      c.end();
      return reply;
    };
    const waitFor = async (to: string, ok: boolean): Promise<void> => {
      for (let i = 0; i < 100 && (await rcpt(to)).startsWith("250") !== ok; i++) await Bun.sleep(100);
      expect((await rcpt(to)).startsWith("250")).toBe(ok);
    };
    try {
      mkdirSync(join(dir, "conf.new"));
      writeFileSync(join(dir, "conf.new", "rules.yaml"), RULES_YAML.replace("domains: [company.com]", "domains: [company.com, two.example]"));
      renameSync(conf, join(dir, "conf.old"));
      renameSync(join(dir, "conf.new"), conf);
      await waitFor("x@two.example", true);
      writeFileSync(join(conf, "rules.yaml"), RULES_YAML.replace("domains: [company.com]", "domains: [company.com, three.example]"));
      await waitFor("x@three.example", true);
      writeFileSync(join(conf, "rules.yaml"), "default: { action: archive }\n");
      await serve.waitForLog((l) => String(l.msg).startsWith("rules reload refused") && String(l.error).includes("no domains"));
      expect(await rcpt("x@company.com")).toStartWith("250");
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  }, 40_000);

  // `cp`, scp or a paste into `cat >` truncates and writes; a writer that pauses leaves a prefix
  // that can be valid YAML with fewer rules. Loaded, it silently dropped the rest until the write
  // ended: here the rule that rejects BLOCKME mail, so such mail was accepted and archived.
  test("a rules file rewritten in place by a writer that pauses is not loaded half-written", async () => {
    const dir = serveDir();
    const blockRule = `  - name: block-me
    priority: 50
    category: spam
    action: reject
    conditions:
      - { field: subject, operator: contains, value: BLOCKME }
`;
    writeFileSync(join(dir, "rules.yaml"), RULES_YAML + blockRule);
    const serve = await startServe("source", dir);
    try {
      const next = RULES_YAML.replace("domains: [company.com]", "domains: [company.com, two.example]");
      const fd = openSync(join(dir, "rules.yaml"), "w");
      writeSync(fd, next); // valid on its own: domains and reject-spam, no block-me yet
      await Bun.sleep(500);
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      expect(await sendMail(c, "b@company.com", simpleMessage("BLOCKME now"))).toMatch(/^550 5\.7\.1 /);
      c.end();
      writeSync(fd, blockRule);
      closeSync(fd);
      const reloaded = await serve.waitForLog((l) => l.msg === "rules reloaded");
      expect(reloaded.rules).toBe(2);
      await Bun.sleep(1500); // a reload of the prefix, had there been one, would have been logged first
      expect(serve.logs.filter((l) => l.msg === "rules reloaded").map((l) => l.rules)).toEqual([2]);
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  }, 30_000);

  // Bun loads ./.env into process.env by itself unless told not to (--no-env-file); the
  // environment outranks .env, so the value at start-up would then win over every later edit
  // (a fixed relay password stayed wrong until a restart).
  test("a relay setting changed in .env is read again on SIGHUP (source mode, as npm start runs it)", async () => {
    const dir = serveDir();
    writeFileSync(join(dir, ".env"), relayEnv(1));
    const serve = await startServe("source", dir);
    try {
      writeFileSync(join(dir, ".env"), relayEnv(2));
      serve.proc.kill("SIGHUP");
      const reloaded = await serve.waitForLog((l) => l.msg === "relay settings reloaded");
      expect(reloaded.relay).toBe("127.0.0.1:2 (none)");
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  }, 30_000);

  // Only RELAY_* (and the rules and TLS files) are reloaded: a changed WEBHOOK_SECRET kept
  // signing with the old secret, and nothing said so.
  test("other settings changed in .env are named at SIGHUP as waiting for a restart, without their values", async () => {
    const dir = serveDir();
    writeFileSync(join(dir, ".env"), "WEBHOOK_SECRET=first-secret\nRATE_LIMIT_MAX=100\n");
    const serve = await startServe("source", dir);
    try {
      writeFileSync(join(dir, ".env"), "WEBHOOK_SECRET=second-secret\nRATE_LIMIT_MAX=5\n");
      serve.proc.kill("SIGHUP");
      const warned = await serve.waitForLog((l) => String(l.msg).startsWith("settings changed since start are applied at restart only"));
      expect(warned.changed).toEqual(["RATE_LIMIT_MAX", "WEBHOOK_SECRET"]);
      // The rules file was not touched: the reload says so, not nothing.
      expect((await serve.waitForLog((l) => String(l.msg).startsWith("rules unchanged"))).version).toBeString();
      expect(JSON.stringify(serve.logs)).not.toContain("second-secret");
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  }, 30_000);
});
