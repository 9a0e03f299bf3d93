import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, redactedConfig } from "../../src/config/config.ts";
import { decodeEnvFile, parseCidrList, parseDotenv } from "../../src/config/parse-values.ts";
import { CliError } from "../../src/errors.ts";

const emptyDir = () => mkdtempSync(join(tmpdir(), "mailgw-config-"));

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CliError);
    return (err as Error).message;
  }
  throw new Error("expected an error");
}

describe("loadConfig", () => {
  test("defaults match SPEC §2", () => {
    const cwd = emptyDir();
    const c = loadConfig({ env: {}, cwd, isTty: false });
    expect(c.smtp.host).toBe("0.0.0.0");
    expect(c.smtp.port).toBe(2525);
    expect(c.smtp.hostname).toBe(hostname()); // SMTP_HOSTNAME: banner and EHLO name
    expect(loadConfig({ env: { SMTP_HOSTNAME: "mx.company.com" }, cwd, isTty: false }).smtp.hostname).toBe("mx.company.com");
    expect(c.smtp.allowedIps).toEqual(["0.0.0.0/0", "::/0"]);
    expect(c.smtp.proxyProtocol).toBe(false);
    expect(c.smtp.proxyTrusted).toEqual(["127.0.0.0/8", "::1/128"]);
    expect(c.smtp.tls).toEqual({ enabled: false, keyPath: null, certPath: null, required: false });
    expect(c.smtp.maxMessageBytes).toBe(25 * 1024 * 1024);
    expect(c.smtp.rateLimit).toEqual({ max: 200, windowMs: 60000 });
    expect(c.relay).toBeNull();
    expect(c.databasePath).toBe(join(cwd, "data/mail-gateway.db"));
    expect(c.dataDir).toBe(join(cwd, "data"));
    expect(c.rulesFile).toBe(join(cwd, "rules.yaml"));
    expect(c.archiveMaxAgeDays).toBe(0);
    expect(c.http).toEqual({ host: "127.0.0.1", port: 3000, statsToken: null });
    expect(c.log).toEqual({ level: "info", format: "json", journalStream: null });
    expect(loadConfig({ env: { JOURNAL_STREAM: "8:12345" }, cwd }).log.journalStream).toBe("8:12345");
    expect(c.queue).toEqual({ maxAgeHours: 96, retryBaseSeconds: 60 });
    expect(loadConfig({ env: {}, cwd, isTty: true }).log.format).toBe("text");
  });

  test("precedence: flags > env > .env > defaults", () => {
    const cwd = emptyDir();
    writeFileSync(join(cwd, ".env"), "# comment\nSMTP_PORT=2601\nHTTP_PORT=3601\nexport RATE_LIMIT_MAX='7'\nLOG_LEVEL=warn # trailing\n");
    const c = loadConfig({ env: { HTTP_PORT: "3701", SMTP_PORT: "2701" }, flags: { SMTP_PORT: "2801" }, cwd });
    expect(c.smtp.port).toBe(2801);
    expect(c.http.port).toBe(3701);
    expect(c.smtp.rateLimit.max).toBe(7);
    expect(c.log.level).toBe("warn");
  });

  test("TLS is on by default only when key and cert are set", () => {
    const cwd = emptyDir();
    expect(loadConfig({ env: { SMTP_TLS_KEY: "k.pem", SMTP_TLS_CERT: "c.pem" }, cwd }).smtp.tls).toEqual({
      enabled: true,
      keyPath: join(cwd, "k.pem"),
      certPath: join(cwd, "c.pem"),
      required: false,
    });
    expect(loadConfig({ env: { SMTP_TLS_KEY: "k.pem", SMTP_TLS_CERT: "c.pem", SMTP_TLS_ENABLED: "false" }, cwd }).smtp.tls.enabled).toBe(false);
    expect(errorOf(() => loadConfig({ env: { SMTP_TLS_ENABLED: "true" }, cwd }))).toContain("SMTP_TLS_KEY");
    // Half a pair is a typo or an omission, not "TLS off": refused unless TLS is turned off explicitly.
    expect(errorOf(() => loadConfig({ env: { SMTP_TLS_KEY: "k.pem" }, cwd }))).toContain("SMTP_TLS_CERT is not");
    expect(errorOf(() => loadConfig({ env: { SMTP_TLS_CERT: "c.pem" }, cwd }))).toContain("SMTP_TLS_KEY is not");
    expect(loadConfig({ env: { SMTP_TLS_KEY: "k.pem", SMTP_TLS_ENABLED: "false" }, cwd }).smtp.tls.enabled).toBe(false);
    expect(errorOf(() => loadConfig({ env: { SMTP_TLS_REQUIRED: "true" }, cwd }))).toContain("SMTP_TLS_REQUIRED");
    expect(errorOf(() => loadConfig({ env: { SMTP_TLS_KEY: "k.pem", SMTP_TLS_CERT: "c.pem", SMTP_TLS_ENABLED: "false", SMTP_TLS_REQUIRED: "true" }, cwd }))).toContain("SMTP_TLS_REQUIRED");
  });

  test("a credential wrapped in quotes (docker --env-file keeps them) is warned about by name, never by value", () => {
    const cwd = emptyDir();
    const c = loadConfig({ env: { RELAY_SMTP_HOST: "smtp.example.com", RELAY_SMTP_USER: "u", RELAY_SMTP_PASS: '"s3cret"', STATS_TOKEN: "'tok'" }, cwd });
    expect(c.warnings.filter((w) => w.includes("starts and ends with a quote")).map((w) => w.split(" ")[0])).toEqual(["RELAY_SMTP_PASS", "STATS_TOKEN"]);
    expect(c.warnings.join("\n")).not.toContain("s3cret");
    // In .env the quotes are syntax, dropped: nothing to say.
    writeFileSync(join(cwd, ".env"), 'RELAY_SMTP_HOST=smtp.example.com\nRELAY_SMTP_USER=u\nRELAY_SMTP_PASS="s3cret"\n');
    expect(loadConfig({ env: {}, cwd }).warnings.some((w) => w.includes("quote"))).toBe(false);
  });

  test("booleans: the spellings taken are named in the error; a follow-on error quotes what was written", () => {
    const cwd = emptyDir();
    for (const v of ["yes", "on", "1", "TRUE"]) expect(loadConfig({ env: { SMTP_PROXY_PROTOCOL: v }, cwd }).smtp.proxyProtocol).toBe(true);
    for (const v of ["no", "off", "0", "False"]) expect(loadConfig({ env: { SMTP_PROXY_PROTOCOL: v }, cwd }).smtp.proxyProtocol).toBe(false);
    expect(errorOf(() => loadConfig({ env: { SMTP_PROXY_PROTOCOL: "maybe" }, cwd }))).toBe(
      "SMTP_PROXY_PROTOCOL=maybe is not a boolean: use true or false (yes/no, on/off and 1/0 are taken too)",
    );
    expect(errorOf(() => loadConfig({ env: { SMTP_TLS_ENABLED: "1" }, cwd }))).toStartWith("SMTP_TLS_ENABLED=1 needs SMTP_TLS_KEY");
    expect(errorOf(() => loadConfig({ env: { SMTP_TLS_REQUIRED: "on" }, cwd }))).toStartWith("SMTP_TLS_REQUIRED=on needs STARTTLS");
  });

  test("relay config, secrets redacted", () => {
    const env = { RELAY_SMTP_HOST: "smtp.mailgun.org", RELAY_SMTP_USER: "u", RELAY_SMTP_PASS: "s3cret", STATS_TOKEN: "t0k", WEBHOOK_SECRET: "w" };
    const c = loadConfig({ env, cwd: emptyDir() });
    expect(c.relay).toEqual({ host: "smtp.mailgun.org", port: 587, user: "u", pass: "s3cret", secure: "starttls", tlsVerify: true });
    const shown = JSON.stringify(redactedConfig(c));
    expect(shown).not.toContain("s3cret");
    expect(shown).not.toContain("t0k");
    expect(errorOf(() => loadConfig({ env: { RELAY_SMTP_HOST: "h", RELAY_SMTP_USER: "u" }, cwd: emptyDir() }))).toContain("RELAY_SMTP_PASS");
  });

  test.each([
    ["SMTP_PORT", "70000"],
    ["SMTP_PORT", "abc"],
    ["SMTP_PROXY_PROTOCOL", "maybe"],
    ["RELAY_SMTP_SECURE", "ssl"],
    ["MAX_MESSAGE_SIZE_MB", "-1"],
    ["RATE_LIMIT_MAX", "0"],
    ["SMTP_ALLOWED_IPS", "10.0.0.0/33"],
    ["SMTP_ALLOWED_IPS", "not-an-ip"],
    ["LOG_LEVEL", "loud"],
    ["DATABASE_URL", "postgres://x"],
    ["QUEUE_RETRY_BASE_SECONDS", "0"],
    ["HTTP_HOST", "999.1.1.1"],
    ["SMTP_HOST", "0.0.0.0 "+"::"],
    ["SMTP_HOST", "host name"],
    ["SMTP_HOSTNAME", "bad host name"],
    ["SMTP_HOSTNAME", "mx.example.com>"],
  ])("%s=%s is refused with a message naming the variable", (name, value) => {
    expect(errorOf(() => loadConfig({ env: { [name]: value }, cwd: emptyDir() }))).toContain(name);
  });

  test("RELAY_SMTP_HOST: a host name or IP; a port, a URL or junk in it is refused with the fix named", () => {
    const cwd = emptyDir();
    for (const [value, host] of [["smtp.mailgun.org", "smtp.mailgun.org"], ["10.0.0.5", "10.0.0.5"], ["[::1]", "::1"], ["::1", "::1"], ["smarthost", "smarthost"]]) {
      expect(loadConfig({ env: { RELAY_SMTP_HOST: value }, cwd }).relay?.host).toBe(host ?? "");
    }
    expect(errorOf(() => loadConfig({ env: { RELAY_SMTP_HOST: "smtp.example.com:587" }, cwd }))).toBe(
      "RELAY_SMTP_HOST=smtp.example.com:587 has a port in it: set RELAY_SMTP_HOST=smtp.example.com and RELAY_SMTP_PORT=587 (now 587)",
    );
    expect(errorOf(() => loadConfig({ env: { RELAY_SMTP_HOST: "[2001:db8::5]:2525" }, cwd }))).toBe(
      "RELAY_SMTP_HOST=[2001:db8::5]:2525 has a port in it: set RELAY_SMTP_HOST=2001:db8::5 and RELAY_SMTP_PORT=2525 (now 587)",
    );
    expect(errorOf(() => loadConfig({ env: { RELAY_SMTP_HOST: "smtp://smtp.example.com" }, cwd }))).toContain("is a URL: give the host name only");
    for (const bad of ["bad host!", "a b", "999.1.1.1", "smtp.example.com>"]) {
      expect(errorOf(() => loadConfig({ env: { RELAY_SMTP_HOST: bad }, cwd }))).toBe(`RELAY_SMTP_HOST=${bad} is not a host name or IP address (e.g. smtp.mailgun.org, 10.0.0.5)`);
    }
  });

  test("listen addresses: IPs (brackets dropped) and names; SMTP_HOSTNAME: a host name", () => {
    const cwd = emptyDir();
    // localhost is the IPv4 loopback: Bun would bind only the first address the name has (::1 on Debian).
    for (const [value, host] of [["::", "::"], ["[::1]", "::1"], ["10.0.0.5", "10.0.0.5"], ["localhost", "127.0.0.1"], ["LocalHost", "127.0.0.1"], ["mx-1.internal", "mx-1.internal"]]) {
      expect(loadConfig({ env: { HTTP_HOST: value }, cwd }).http.host).toBe(host ?? "");
    }
    expect(loadConfig({ env: { SMTP_HOSTNAME: "mx1.example.com." }, cwd }).smtp.hostname).toBe("mx1.example.com.");
    expect(errorOf(() => loadConfig({ env: { HTTP_HOST: "999.1.1.1" }, cwd }))).toBe("HTTP_HOST=999.1.1.1 is not an IP address or host name (e.g. 0.0.0.0, ::, 127.0.0.1, localhost)");
  });

  test("SMTP and HTTP on one port are refused at start, naming both; apart, or on addresses that do not overlap, they are fine", () => {
    const cwd = emptyDir();
    const clash = "SMTP_PORT and HTTP_PORT are both 2600";
    expect(errorOf(() => loadConfig({ env: { SMTP_PORT: "2600", HTTP_PORT: "2600" }, cwd }))).toStartWith(`${clash} (on 0.0.0.0 and 127.0.0.1)`);
    expect(errorOf(() => loadConfig({ flags: { SMTP_PORT: "2600", HTTP_PORT: "2600" }, env: { SMTP_HOST: "::", HTTP_HOST: "::1" }, cwd }))).toStartWith(clash);
    expect(errorOf(() => loadConfig({ env: { SMTP_PORT: "2600", HTTP_PORT: "2600", SMTP_HOST: "10.0.0.5", HTTP_HOST: "10.0.0.5" }, cwd }))).toStartWith(clash);
    for (const env of [
      { SMTP_PORT: "2600", HTTP_PORT: "2601" },
      { SMTP_PORT: "0", HTTP_PORT: "0" },
      { SMTP_PORT: "2600", HTTP_PORT: "2600", SMTP_HOST: "10.0.0.5", HTTP_HOST: "127.0.0.1" },
      { SMTP_PORT: "2600", HTTP_PORT: "2600", SMTP_HOST: "0.0.0.0", HTTP_HOST: "::1" },
    ]) {
      expect(loadConfig({ env, cwd }).http.port).toBe(Number(env.HTTP_PORT));
    }
  });

  // The kernel keeps one port space for an IPv4 address and its IPv4-mapped IPv6 form, and `::0`
  // is the IPv6 wildcard written another way: compared as text, serve started and then failed
  // at bind time with 'cannot listen for HTTP' (the refusal this check exists to replace).
  test("SMTP and HTTP on one port: an IPv4-mapped address or another spelling of :: is the same listener", () => {
    const cwd = emptyDir();
    for (const [smtp, http] of [["::ffff:127.0.0.1", "127.0.0.1"], ["0.0.0.0", "::ffff:10.0.0.5"], ["::0", "127.0.0.1"], ["0:0:0:0:0:0:0:1", "::1"], ["[::FFFF:7F00:1]", "localhost"]]) {
      expect({ smtp, http, error: errorOf(() => loadConfig({ env: { SMTP_PORT: "2600", HTTP_PORT: "2600", SMTP_HOST: smtp, HTTP_HOST: http }, cwd })) }).toEqual({ smtp, http, error: expect.stringMatching(/^SMTP_PORT and HTTP_PORT are both 2600/) });
    }
  });

  test("0 is not silently turned into the default", () => {
    const c = loadConfig({ env: { ARCHIVE_MAX_AGE_DAYS: "0", SMTP_PORT: "0" }, cwd: emptyDir() });
    expect(c.archiveMaxAgeDays).toBe(0);
    expect(c.smtp.port).toBe(0);
  });

  test("unknown flag variable is refused", () => {
    expect(errorOf(() => loadConfig({ flags: { SMTP_PROT: "1" }, cwd: emptyDir() }))).toContain("SMTP_PROT");
  });

  test("unset DATABASE_URL: the database goes with DATA_DIR; a given one is kept even if it equals the default", () => {
    const cwd = emptyDir();
    expect(loadConfig({ flags: { DATA_DIR: "/srv/mail/data" }, cwd }).databasePath).toBe("/srv/mail/data/mail-gateway.db");
    expect(loadConfig({ env: { DATA_DIR: "spool-disk" }, cwd }).databasePath).toBe(join(cwd, "spool-disk/mail-gateway.db"));
    const given = loadConfig({ env: { DATA_DIR: "/srv/mail/data", DATABASE_URL: "file:./data/mail-gateway.db" }, cwd });
    expect(given.databasePath).toBe(join(cwd, "data/mail-gateway.db"));
  });

  test("DATABASE_URL forms", () => {
    const cwd = emptyDir();
    expect(loadConfig({ env: { DATABASE_URL: "file:/var/lib/mailgw/x.db" }, cwd }).databasePath).toBe("/var/lib/mailgw/x.db");
    expect(loadConfig({ env: { DATABASE_URL: "./y.db" }, cwd }).databasePath).toBe(join(cwd, "y.db"));
    expect(loadConfig({ env: { DATABASE_URL: "file:///var/lib/mailgw/x.db" }, cwd }).databasePath).toBe("/var/lib/mailgw/x.db");
    expect(loadConfig({ env: { DATABASE_URL: "file://localhost/var/lib/mailgw/x.db" }, cwd }).databasePath).toBe("/var/lib/mailgw/x.db");
    expect(loadConfig({ env: { DATABASE_URL: "sqlite:./z.db" }, cwd }).databasePath).toBe(join(cwd, "z.db"));
    expect(loadConfig({ env: { DATABASE_URL: "sqlite:///var/lib/mailgw/x.db" }, cwd }).databasePath).toBe("/var/lib/mailgw/x.db");
    expect(loadConfig({ env: { DATABASE_URL: "sqlite://z.db" }, cwd }).databasePath).toBe(join(cwd, "z.db"));
  });

  test("DATABASE_URL with a query string, a fragment, a host or another scheme is refused, not made part of a new file's name", () => {
    const cwd = emptyDir();
    const err = (url: string) => errorOf(() => loadConfig({ env: { DATABASE_URL: url }, cwd }));
    expect(err("file:./data/x.db?mode=ro")).toBe(
      "DATABASE_URL=file:./data/x.db?mode=ro has a query string (?mode=ro): mailgw opens the file itself and takes no parameters; write file:./data/x.db",
    );
    expect(err("file:/var/lib/x.db?cache=shared&mode=rwc")).toContain("has a query string (?cache=shared&mode=rwc)");
    expect(err("sqlite:x.db#main")).toBe("DATABASE_URL=sqlite:x.db#main has a fragment (#main): write sqlite:x.db");
    expect(err("file://db.internal/srv/x.db")).toContain("names a host (db.internal): write file:///db.internal/srv/x.db or file:/db.internal/srv/x.db");
    expect(err("sqlite3:./x.db")).toBe("DATABASE_URL=sqlite3:./x.db is not a SQLite file URL: expected file:PATH (e.g. file:./data/mail-gateway.db)");
  });

  test("an env file that is a directory is named, with the reason", () => {
    const cwd = emptyDir();
    expect(errorOf(() => loadConfig({ envFile: cwd, cwd }))).toBe(`cannot read env file ${cwd}: it is a directory`);
  });

  test("SPEC's planned variables, set, are warned about: they do nothing yet", () => {
    const c = loadConfig({ env: { FORWARD_FROM: "fwd@company.com", SRS_DOMAIN: "company.com" }, cwd: emptyDir() });
    expect(c.warnings).toEqual([
      "FORWARD_FROM is set, but it is planned, not implemented yet: forwarded copies keep their original From:",
      "SRS_DOMAIN is set, but SRS is planned, not implemented yet: forwarded mail keeps its original envelope sender",
    ]);
    expect(loadConfig({ env: {}, cwd: emptyDir() }).warnings).toEqual([]);
  });

  test("unknown variables are reported, with the known name they are a typo of", () => {
    const cwd = emptyDir();
    writeFileSync(join(cwd, ".env"), "SMTP_TLS_CRT=/etc/cert.pem\nsmtp_port=25\nMY_NOTE=x\nSMTP_PORT=2526\nTZ=UTC\nNODE_EXTRA_CA_CERTS=/etc/ca.pem\n");
    const env = { RELAY_SMTP_PASSWORD: "pw", HTTP_PROXY: "http://proxy:3128", LOG_DIR: "/var/log", HOME: "/root", RELAY_SMTP_HSOT: "h", SMTP_BANNER: "hi" };
    const c = loadConfig({ env, cwd });
    const envFile = join(cwd, ".env");
    expect(c.warnings).toEqual([
      `${envFile}: unknown variable SMTP_TLS_CRT (did you mean SMTP_TLS_CERT?); it is ignored`,
      `${envFile}: unknown variable smtp_port (did you mean SMTP_PORT?); it is ignored`,
      `${envFile}: unknown variable MY_NOTE; it is ignored`,
      `${envFile}: TZ has no effect here: the runtime reads it from the process environment only (export it, or use systemd's EnvironmentFile or docker --env-file)`,
      `${envFile}: NODE_EXTRA_CA_CERTS has no effect here: the runtime reads it from the process environment only (export it, or use systemd's EnvironmentFile or docker --env-file)`,
      "environment: unknown variable RELAY_SMTP_PASSWORD; it is ignored",
      "environment: unknown variable RELAY_SMTP_HSOT (did you mean RELAY_SMTP_HOST?); it is ignored",
      "environment: unknown variable SMTP_BANNER; it is ignored",
    ]);
    // The same file as systemd's EnvironmentFile: the runtime's variables are in the process environment too.
    const both = loadConfig({ env: { TZ: "UTC", NODE_EXTRA_CA_CERTS: "/etc/ca.pem" }, cwd });
    expect(both.warnings.filter((w) => /TZ|NODE_/.test(w))).toEqual([]);
    // Other programs' variables in the environment are not ours to judge.
    expect(loadConfig({ env: { HTTP_PROXY: "x", LOG_DIR: "y", PATH: "/bin", DEBUG: "1" }, cwd: emptyDir() }).warnings).toEqual([]);
  });
});

describe("value parsers", () => {
  test("CIDR list: single addresses get a full prefix", () => {
    expect(parseCidrList("10.0.0.1, ::1,192.168.0.0/16", "X")).toEqual(["10.0.0.1/32", "::1/128", "192.168.0.0/16"]);
  });
  test(".env values: `#` starts a comment only after a space and outside quotes; quotes only in pairs", () => {
    const env = parseDotenv(`A="x #y"\nB=abc#def\nC='"x'\nD=v # note\nE='q #r'\nF=   # optional\nG=\t#\nH=#x\n`, ".env");
    // `KEY=   # note` is empty, as after a value; `#` right after `=` is the value's.
    expect(Object.fromEntries(env)).toEqual({ A: "x #y", B: "abc#def", C: `"x`, D: "v", E: "q #r", F: "", G: "", H: "#x" });
    // A note after a quoted value goes too, and the quotes with it (they were kept: a quoted
    // STATS_TOKEN with a note got 401, a quoted password failed the relay login).
    const noted = parseDotenv(`T="abc123" # my token
U='p #w'   # note "x"
V="a" #
`, ".env");
    expect(Object.fromEntries(noted)).toEqual({ T: "abc123", U: "p #w", V: "a" });
  });

  test(".env: a quote not closed on its line, or text glued after a closing quote, is refused naming file, line and key", () => {
    // systemd reads the first as a value running on over the next lines, the second as one value ("x#y").
    expect(errorOf(() => parseDotenv(`A=1\nRELAY_SMTP_PASS="s3cret\nB=2\n`, "/x/.env"))).toBe(
      `/x/.env:2: RELAY_SMTP_PASS: the value opens a " quote that is not closed on this line (a value is one line); close it, or put a value that starts with " in ' quotes`,
    );
    expect(errorOf(() => parseDotenv(`C="x'\n`, "/x/.env"))).toStartWith(`/x/.env:1: C: the value opens a " quote that is not closed`);
    expect(errorOf(() => parseDotenv(`W="x"#y\n`, "/x/.env"))).toBe(
      `/x/.env:1: W: text after the closing " quote; put the whole value in the quotes, or a note after a space and #`,
    );
  });

  test(".env: bytes that are not UTF-8 are refused naming the line (they were read as U+FFFD)", () => {
    const bytes = Buffer.concat([Buffer.from("A=1\r\nRELAY_SMTP_PASS=Passw"), Buffer.from([0xf6]), Buffer.from("rt\r\n")]);
    expect(errorOf(() => decodeEnvFile(bytes, "/x/.env"))).toBe("/x/.env:2: not UTF-8 text (saved as Windows-1252 or Latin-1?): save the file as UTF-8");
    expect(decodeEnvFile(Buffer.from("\ufeffA=ü\n"), "/x/.env")).toBe("A=ü\n");
  });

  test(".env: a comment line saved as Windows-1252 is read, as systemd and mailgw before it did: only a setting is refused", () => {
    const bytes = Buffer.concat([Buffer.from("# Konfiguration f"), Buffer.from([0xfc]), Buffer.from("r mailgw\r\n  #  "), Buffer.from([0xe9]), Buffer.from("\r\nA=1\r\n")]);
    expect(parseDotenv(decodeEnvFile(bytes, "/x/.env"), "/x/.env")).toEqual(new Map([["A", "1"]]));
    const alsoInSetting = Buffer.concat([bytes, Buffer.from("B=Passw"), Buffer.from([0xf6]), Buffer.from("rt\n")]);
    expect(errorOf(() => decodeEnvFile(alsoInSetting, "/x/.env"))).toBe("/x/.env:4: not UTF-8 text (saved as Windows-1252 or Latin-1?): save the file as UTF-8");
  });

  test("values: numbers whole and not empty, spaces around a value ignored, choices in any case", () => {
    expect(errorOf(() => loadConfig({ env: { SMTP_PORT: "25abc" }, cwd: emptyDir() }))).toBe("SMTP_PORT=25abc is not an integer between 0 and 65535");
    expect(errorOf(() => loadConfig({ env: { ARCHIVE_MAX_AGE_DAYS: "" }, cwd: emptyDir() }))).toContain("ARCHIVE_MAX_AGE_DAYS=");
    expect(loadConfig({ env: { SMTP_PORT: " 2526 " }, cwd: emptyDir() }).smtp.port).toBe(2526);
    expect(loadConfig({ env: { LOG_FORMAT: "TEXT", LOG_LEVEL: "DEBUG" }, cwd: emptyDir() }).log).toMatchObject({ format: "text", level: "debug" });
  });

  test("decimal numbers only: hex, binary, octal and exponent forms are refused, naming the variable", () => {
    for (const v of ["0x10", "0b11", "0o7", "1e3", "Infinity", "+5"]) {
      expect(errorOf(() => loadConfig({ env: { MAX_MESSAGE_SIZE_MB: v }, cwd: emptyDir() }))).toBe(`MAX_MESSAGE_SIZE_MB=${v} is not a number between 0.001 and 1024`);
    }
    expect(loadConfig({ env: { MAX_MESSAGE_SIZE_MB: "0.5" }, cwd: emptyDir() }).smtp.maxMessageBytes).toBe(524288);
    expect(loadConfig({ env: { QUEUE_MAX_AGE_HOURS: "12." }, cwd: emptyDir() }).queue.maxAgeHours).toBe(12);
    expect(loadConfig({ env: { ARCHIVE_MAX_AGE_DAYS: " 30 " }, cwd: emptyDir() }).archiveMaxAgeDays).toBe(30);
  });

  test("a CIDR with host bits set is taken as its network, with a warning naming both readings", () => {
    const c = loadConfig({ env: { SMTP_ALLOWED_IPS: "10.0.0.1/8,192.0.2.7,2001:db8::1/32,198.51.100.0/24", SMTP_PROXY_TRUSTED: "127.0.0.1/8" }, cwd: emptyDir() });
    expect(c.warnings).toEqual([
      "SMTP_ALLOWED_IPS: 10.0.0.1/8 has host bits set and means the whole network 10.0.0.0/8; write 10.0.0.0/8 if that is meant, or 10.0.0.1/32 for the one address",
      "SMTP_ALLOWED_IPS: 2001:db8::1/32 has host bits set and means the whole network 2001:db8::/32; write 2001:db8::/32 if that is meant, or 2001:db8::1/128 for the one address",
      "SMTP_PROXY_TRUSTED: 127.0.0.1/8 has host bits set and means the whole network 127.0.0.0/8; write 127.0.0.0/8 if that is meant, or 127.0.0.1/32 for the one address",
    ]);
    expect(c.smtp.allowedIps).toEqual(["10.0.0.1/8", "192.0.2.7/32", "2001:db8::1/32", "198.51.100.0/24"]);
    // An IPv4-mapped range is named in the form it was written in, not as hex.
    expect(loadConfig({ env: { SMTP_ALLOWED_IPS: "::ffff:10.0.0.1/104" }, cwd: emptyDir() }).warnings).toEqual([
      "SMTP_ALLOWED_IPS: ::ffff:10.0.0.1/104 has host bits set and means the whole network ::ffff:10.0.0.0/104; write ::ffff:10.0.0.0/104 if that is meant, or ::ffff:10.0.0.1/128 for the one address",
    ]);
  });

  test("QUEUE_RETRY_BASE_SECONDS above the one-hour cap on retry delays is warned about: it cannot take effect", () => {
    expect(loadConfig({ env: { QUEUE_RETRY_BASE_SECONDS: "7200" }, cwd: emptyDir() }).warnings).toEqual([
      "QUEUE_RETRY_BASE_SECONDS=7200 is above the 3600 s cap on every retry delay: retries wait 3600 s",
    ]);
    expect(loadConfig({ env: { QUEUE_RETRY_BASE_SECONDS: "3600" }, cwd: emptyDir() }).warnings).toEqual([]);
  });

  test(".env syntax errors name file and line", () => {
    expect(errorOf(() => parseDotenv("A=1\nthis is wrong\n", "/x/.env"))).toBe("/x/.env:2: not a KEY=VALUE line");
  });
});

describe("debugRequested", () => {
  test("reads LOG_LEVEL from env or .env, and survives an otherwise invalid config", async () => {
    const { debugRequested } = await import("../../src/config/config.ts");
    const cwd = emptyDir();
    expect(debugRequested({ env: {}, cwd })).toBe(false);
    expect(debugRequested({ env: { LOG_LEVEL: "debug", SMTP_PORT: "nope" }, cwd })).toBe(true);
    writeFileSync(join(cwd, ".env"), "LOG_LEVEL=debug\n");
    expect(debugRequested({ env: {}, cwd })).toBe(true);
  });
});

test("a STATS_TOKEN shorter than 16 characters is warned about (guessed quickly); a long one, or none, is not", () => {
  const cwd = mkdtempSync(join(tmpdir(), "mailgw-token-"));
  const warned = (token?: string) => loadConfig({ env: token === undefined ? {} : { STATS_TOKEN: token }, cwd }).warnings.filter((w) => w.startsWith("STATS_TOKEN has"));
  expect(warned("t0k")).toEqual(["STATS_TOKEN has 3 characters: a client can try tens of thousands a second, so a short one is guessed in minutes; use at least 16 random ones (openssl rand -hex 32)"]);
  expect(warned("0123456789abcdef")).toEqual([]);
  expect(warned()).toEqual([]);
  rmSync(cwd, { recursive: true, force: true });
});
