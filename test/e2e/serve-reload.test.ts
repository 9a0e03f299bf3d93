/**
 * The RCPT domain check follows hot-reloaded rules in the real `mailgw serve`: a domain added
 * to rules.yaml is accepted after SIGHUP (and by the file watcher) without dropping an open
 * session; an invalid rules file is refused and the last good domains stay in force. A relay
 * setting changed in .env is read again on SIGHUP when serve runs the way `npm start` runs it.
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { RawClient, greet } from "../smtp/helpers.ts";
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
});
