/**
 * `mailgw systemd install|uninstall` as an operator runs it: the compiled executable, copied
 * outside the repository, writing below `--root` into a temp dir. The unit is checked key by
 * key, then by `systemd-analyze verify` where the Debian systemd package is installed.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { VARIABLES } from "../../src/config/variables.ts";
import { hiddenExecReason, installSystemd, rootOption, type SystemdOptions } from "../../src/systemd/install.ts";
import { quoteExecArg } from "../../src/systemd/unit.ts";
import { findTool, runBinary } from "./binary.ts";
import { systemdTestRoots } from "./systemd-roots.ts";

const setup = systemdTestRoots("mailgw-root-");
const newRoot = (): string => setup.newRoot();

/** [Section] → key → values, in file order (repeated keys keep every value). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const section = /^\[(\w+)\]$/.exec(line);
    if (section) sections.set(section[1] ?? "", (current = new Map()));
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (kv) current.set(kv[1] ?? "", [...(current.get(kv[1] ?? "") ?? []), kv[2] ?? ""]);
  }
  return sections;
}

async function install(root: string, env: Record<string, string> = {}, extra: string[] = []) {
  return runBinary(setup.binary.bin, ["systemd", "install", "--root", root, ...extra], { cwd: setup.binary.dir, env });
}

describe("systemd install --root", () => {
  test("writes a hardened unit, checked key by key", async () => {
    const root = newRoot();
    const run = await install(root);
    // The copy under test lives in /tmp, which the service cannot see: said below --root, refused live.
    expect(run.stderr).toBe(`mailgw: warning: ${hiddenExecReason([setup.binary.bin])}\n`);
    expect(run.exitCode).toBe(0);
    const unitPath = join(root, "etc/systemd/system/mailgw.service");
    expect(run.stdout).toContain(`wrote   ${unitPath}`);
    const service = parseUnit(readFileSync(unitPath, "utf8")).get("Service");
    if (!service) throw new Error("no [Service] section");
    const expected: Record<string, string> = {
      ExecStart: `${setup.binary.bin} serve`,
      ExecReload: "/bin/kill -HUP $MAINPID",
      Restart: "always",
      DynamicUser: "yes",
      User: "mailgw",
      StateDirectory: "mailgw",
      WorkingDirectory: "/var/lib/mailgw",
      EnvironmentFile: "/etc/mailgw/mailgw.env",
      NoNewPrivileges: "yes",
      ProtectSystem: "strict",
      ProtectHome: "yes",
      PrivateTmp: "yes",
      ReadWritePaths: "/var/lib/mailgw",
      LimitNOFILE: "65536",
      CapabilityBoundingSet: "",
    };
    for (const [key, value] of Object.entries(expected)) expect({ key, values: service.get(key) }).toEqual({ key, values: [value] });
    expect(service.has("AmbientCapabilities")).toBe(false);
    // Started once the clock is set: a 1970 date would file mail under a day retention removes.
    expect(parseUnit(readFileSync(unitPath, "utf8")).get("Unit")?.get("After")).toEqual(["network-online.target time-sync.target"]);
    expect(statSync(unitPath).mode & 0o777).toBe(0o644);
  });

  test("env file lists every SPEC §2 variable with its default, paths into /var/lib/mailgw and /etc/mailgw", async () => {
    const root = newRoot();
    expect((await install(root)).exitCode).toBe(0);
    const envPath = join(root, "etc/mailgw/mailgw.env");
    const text = readFileSync(envPath, "utf8");
    const active: Record<string, string> = {
      DATA_DIR: "/var/lib/mailgw/data",
      DATABASE_URL: "file:/var/lib/mailgw/data/mail-gateway.db",
      RULES_FILE: "/etc/mailgw/rules.yaml",
    };
    for (const v of VARIABLES) {
      const line = active[v.name] !== undefined ? `\n${v.name}=${active[v.name]}\n` : `\n#${v.name}=${v.default}\n`;
      expect({ variable: v.name, present: text.includes(line) }).toEqual({ variable: v.name, present: true });
    }
    expect(statSync(envPath).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(root, "etc/mailgw/rules.yaml"), "utf8")).toContain("domains:");
  });

  test("CAP_NET_BIND_SERVICE only when a configured port is below 1024", async () => {
    const cases: { env: Record<string, string>; flags: string[]; privileged: boolean }[] = [
      { env: { SMTP_PORT: "25" }, flags: [], privileged: true },
      { env: { SMTP_PORT: "2525" }, flags: [], privileged: false },
      { env: {}, flags: ["--smtp-port", "25"], privileged: true },
      { env: { HTTP_PORT: "80" }, flags: [], privileged: true },
      { env: { SMTP_PORT: "0" }, flags: [], privileged: false },
      { env: { SMTP_PORT: "1023" }, flags: [], privileged: true },
      { env: { SMTP_PORT: "1024" }, flags: [], privileged: false },
    ];
    for (const c of cases) {
      const root = newRoot();
      const run = await install(root, c.env, c.flags);
      expect(run.exitCode).toBe(0);
      const service = parseUnit(readFileSync(join(root, "etc/systemd/system/mailgw.service"), "utf8")).get("Service");
      const label = JSON.stringify(c);
      expect({ label, ambient: service?.get("AmbientCapabilities") ?? null }).toEqual({
        label,
        ambient: c.privileged ? ["CAP_NET_BIND_SERVICE"] : null,
      });
      expect({ label, bounding: service?.get("CapabilityBoundingSet") }).toEqual({
        label,
        bounding: [c.privileged ? "CAP_NET_BIND_SERVICE" : ""],
      });
      if (c.env.SMTP_PORT === "25") expect(readFileSync(join(root, "etc/mailgw/mailgw.env"), "utf8")).toContain("\nSMTP_PORT=25\n");
    }
  });

  test("a .env where install is run (a dev checkout's) is not the service's: its ports are not copied", async () => {
    const root = newRoot();
    const checkout = newRoot();
    writeFileSync(join(checkout, ".env"), "SMTP_PORT=26025\nHTTP_PORT=26080\nRELAY_SMTP_PASS=devpass\n");
    const run = await runBinary(setup.binary.bin, ["systemd", "install", "--root", root], { cwd: checkout });
    expect(run.exitCode).toBe(0);
    const envText = readFileSync(join(root, "etc/mailgw/mailgw.env"), "utf8");
    expect(envText).not.toMatch(/^(SMTP_PORT|HTTP_PORT)=/m);
    expect(envText).not.toContain("devpass");
    expect(envText).toMatch(/^#SMTP_PORT=2525$/m);
    // The environment still counts, as the README says (sudo SMTP_PORT=25 mailgw systemd install).
    const root25 = newRoot();
    expect((await runBinary(setup.binary.bin, ["systemd", "install", "--root", root25], { cwd: checkout, env: { SMTP_PORT: "25" } })).exitCode).toBe(0);
    expect(readFileSync(join(root25, "etc/mailgw/mailgw.env"), "utf8")).toMatch(/^SMTP_PORT=25$/m);
  });

  test("the unit says each install rewrites it and local changes go in a drop-in", async () => {
    const root = newRoot();
    expect((await install(root, {}, ["--exec-path", "/usr/local/bin/mailgw"])).exitCode).toBe(0);
    expect(readFileSync(join(root, "etc/systemd/system/mailgw.service"), "utf8")).toContain(
      "\n# Each install rewrites this file: put local changes in a drop-in (sudo systemctl edit mailgw).\n",
    );
  });

  test("never overwrites an existing env file or rules file; its ports decide the capability", async () => {
    const root = newRoot();
    mkdirSync(join(root, "etc/mailgw"), { recursive: true });
    const envPath = join(root, "etc/mailgw/mailgw.env");
    const rulesPath = join(root, "etc/mailgw/rules.yaml");
    writeFileSync(envPath, "SMTP_PORT=25\nRELAY_SMTP_PASS=keep-me\n");
    writeFileSync(rulesPath, "domains: [mine.example]\n");
    const run = await install(root, { SMTP_PORT: "2525" });
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toContain(`kept    ${envPath}`);
    expect(readFileSync(envPath, "utf8")).toBe("SMTP_PORT=25\nRELAY_SMTP_PASS=keep-me\n");
    expect(readFileSync(rulesPath, "utf8")).toBe("domains: [mine.example]\n");
    const unit = readFileSync(join(root, "etc/systemd/system/mailgw.service"), "utf8");
    expect(unit).toContain("\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n");
    expect(unit).not.toContain("keep-me");
  });

  test("a database outside the state directory is writable for the service, in every DATABASE_URL form serve reads", async () => {
    for (const url of ["file:/srv/mailgw-db/x.db", "file:///srv/mailgw-db/x.db", "file://localhost/srv/mailgw-db/x.db", "/srv/mailgw-db/x.db"]) {
      const root = newRoot();
      mkdirSync(join(root, "etc/mailgw"), { recursive: true });
      writeFileSync(join(root, "etc/mailgw/mailgw.env"), `DATABASE_URL=${url}\n`);
      expect((await install(root)).exitCode).toBe(0);
      const service = parseUnit(readFileSync(join(root, "etc/systemd/system/mailgw.service"), "utf8")).get("Service");
      expect({ url, writable: service?.get("ReadWritePaths") }).toEqual({ url, writable: ["/var/lib/mailgw -/srv/mailgw-db"] });
    }
  });

  test("a DATA_DIR outside the state directory that does not exist yet: a warning saying to create it (the service cannot)", async () => {
    const root = newRoot();
    mkdirSync(join(root, "etc/mailgw"), { recursive: true });
    writeFileSync(join(root, "etc/mailgw/mailgw.env"), "DATA_DIR=/srv/mailgw-data\nDATABASE_URL=file:/srv/mailgw-data/x.db\n", { mode: 0o600 });
    const run = await install(root, {}, ["--exec-path", "/usr/local/bin/mailgw"]);
    expect(run.exitCode).toBe(0);
    expect(run.stderr.trim().split("\n")).toEqual([
      "mailgw: warning: /srv/mailgw-data (DATA_DIR) does not exist, and the service cannot create it (ProtectSystem=strict): create it for the service's user before starting, " +
        `with the mailgw system user (README "TLS certificates": useradd --system ... mailgw) and sudo install -d -m 0750 -o mailgw -g mailgw /srv/mailgw-data`,
    ]);
    mkdirSync(join(root, "srv/mailgw-data"), { recursive: true });
    expect((await install(root, {}, ["--exec-path", "/usr/local/bin/mailgw"])).stderr).toBe("");
  });

  test("an existing env file other users can read is kept, with a warning to chmod 600 it", async () => {
    const root = newRoot();
    const envPath = join(root, "etc/mailgw/mailgw.env");
    mkdirSync(join(root, "etc/mailgw"), { recursive: true });
    writeFileSync(envPath, "RELAY_SMTP_PASS=s3cret\n");
    chmodSync(envPath, 0o644);
    const run = await install(root, {}, ["--exec-path", "/usr/local/bin/mailgw"]);
    expect(run.exitCode).toBe(0);
    expect(run.stderr).toBe(`mailgw: warning: ${envPath} is mode 0644: users other than its owner can read the secrets it may hold (RELAY_SMTP_PASS, STATS_TOKEN, WEBHOOK_SECRET); sudo chmod 600 ${envPath}\n`);
    expect(statSync(envPath).mode & 0o777).toBe(0o644);
    chmodSync(envPath, 0o600);
    expect((await install(root, {}, ["--exec-path", "/usr/local/bin/mailgw"])).stderr).toBe("");
  });

  test("a port flag an existing env file contradicts is refused (exit 1), not silently ignored", async () => {
    const root = newRoot();
    mkdirSync(join(root, "etc/mailgw"), { recursive: true });
    const envPath = join(root, "etc/mailgw/mailgw.env");
    writeFileSync(envPath, "SMTP_PORT=2525\n");
    const refused = await install(root, {}, ["--smtp-port", "25"]);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain(`--smtp-port 25 would be ignored: ${envPath} exists and sets SMTP_PORT=2525`);
    expect(existsSync(join(root, "etc/systemd/system/mailgw.service"))).toBe(false);
    const same = await install(root, {}, ["--smtp-port", "2525"]);
    expect(same.exitCode).toBe(0);
    // The template's commented-out line sets nothing: the message says the default applies.
    writeFileSync(envPath, "#SMTP_PORT=2525\n");
    const commented = await install(root, {}, ["--smtp-port", "25"]);
    expect(commented.exitCode).toBe(1);
    expect(commented.stderr).toContain(`${envPath} exists and does not set SMTP_PORT (so the default 2525 applies) (install never rewrites it); set SMTP_PORT=25 there`);
  });

  test("a bad port names the flag it came from; SMTP and HTTP on one port write nothing (serve could never start)", async () => {
    const root = newRoot();
    const bad = await install(root, {}, ["--smtp-port", "99999"]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toContain("SMTP_PORT=99999 (--smtp-port) is not a port number between 0 and 65535");
    const clash = await install(root, {}, ["--smtp-port", "25", "--http-port", "25"]);
    expect(clash.exitCode).toBe(1);
    expect(clash.stderr).toContain("SMTP_PORT and HTTP_PORT are both 25 (--smtp-port, --http-port)");
    expect(existsSync(join(root, "etc/systemd/system/mailgw.service"))).toBe(false);
    // One port on two addresses that do not overlap is a valid setup.
    mkdirSync(join(root, "etc/mailgw"), { recursive: true });
    writeFileSync(join(root, "etc/mailgw/mailgw.env"), "SMTP_HOST=203.0.113.5\nSMTP_PORT=8025\nHTTP_PORT=8025\n");
    expect((await install(root)).exitCode).toBe(0);
  });

  // serve reads `localhost` as 127.0.0.1 and `[::]` as ::, and then refuses one port for both:
  // install compared the env file's text, so it wrote a unit that could never start.
  test("SMTP and HTTP on one port written as localhost or [::] in the env file: nothing written", async () => {
    for (const host of ["localhost", "[::]"]) {
      const root = newRoot();
      mkdirSync(join(root, "etc/mailgw"), { recursive: true });
      writeFileSync(join(root, "etc/mailgw/mailgw.env"), `SMTP_HOST=${host}\nSMTP_PORT=8025\nHTTP_PORT=8025\n`);
      const run = await install(root);
      expect({ host, code: run.exitCode, stderr: run.stderr }).toEqual({ host, code: 1, stderr: expect.stringContaining("SMTP_PORT and HTTP_PORT are both 8025") });
      expect(existsSync(join(root, "etc/systemd/system/mailgw.service"))).toBe(false);
    }
  });

  test("an env file it cannot read: exit 1 with one line saying to use sudo", async () => {
    const root = newRoot();
    mkdirSync(join(root, "etc/mailgw/mailgw.env"), { recursive: true }); // a directory: unreadable as a file
    const run = await install(root, {}, ["--print", "--exec-path", "/usr/local/bin/mailgw"]);
    expect(run.exitCode).toBe(1);
    expect(run.stderr.trim().split("\n")).toEqual([expect.stringContaining("run this with sudo")]);
  });

  test("--print writes the unit to stdout and nothing to disk", async () => {
    const root = newRoot();
    const run = await install(root, {}, ["--print"]);
    expect(run.exitCode).toBe(0);
    expect(run.stdout.startsWith("# /etc/systemd/system/mailgw.service")).toBe(true);
    expect(run.stdout).toContain(`\nExecStart=${setup.binary.bin} serve\n`);
    expect(existsSync(join(root, "etc"))).toBe(false);
  });

  test("--exec-path sets ExecStart (packaging); a relative path is refused", async () => {
    const root = newRoot();
    const ok = await install(root, {}, ["--print", "--exec-path", "/usr/local/bin/mailgw"]);
    expect(ok.stdout).toContain("\nExecStart=/usr/local/bin/mailgw serve\n");
    const bad = await install(root, {}, ["--exec-path", "mailgw"]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr.trim().split("\n")).toEqual([expect.stringContaining("--exec-path mailgw is not absolute")]);
    // A line break would add a directive of its own to the unit.
    const injected = await install(root, {}, ["--print", "--exec-path", "/opt/a\nExecStartPre=/bin/evil"]);
    expect(injected.exitCode).toBe(1);
    expect(injected.stdout).not.toContain("ExecStartPre");
    expect(injected.stderr).toContain("contains a control character");
  });

  test("uninstall --root removes the unit and keeps settings", async () => {
    const root = newRoot();
    expect((await install(root)).exitCode).toBe(0);
    const run = await runBinary(setup.binary.bin, ["systemd", "uninstall", "--root", root], { cwd: setup.binary.dir });
    expect(run.exitCode).toBe(0);
    expect(existsSync(join(root, "etc/systemd/system/mailgw.service"))).toBe(false);
    expect(existsSync(join(root, "etc/mailgw/mailgw.env"))).toBe(true);
    // Only what is there is reported as kept (no state directory was ever created below --root).
    const kept = run.stdout.split("\n").filter((l) => l.startsWith("kept"));
    expect(kept).toEqual([`kept    ${join(root, "etc/mailgw")} (exists; not changed)`]);
  });

  test("systemd-analyze verify accepts the unit", async () => {
    const analyze = findTool("systemd-analyze");
    if (!analyze) {
      console.warn("skip: systemd-analyze not installed (Debian package systemd)");
      return;
    }
    for (const port of ["2525", "25"]) {
      const root = newRoot();
      expect((await install(root, { SMTP_PORT: port })).exitCode).toBe(0);
      const verify = Bun.spawnSync([analyze, "verify", join(root, "etc/systemd/system/mailgw.service")], { stdout: "pipe", stderr: "pipe" });
      expect({ port, stderr: verify.stderr.toString(), exitCode: verify.exitCode }).toEqual({ port, stderr: "", exitCode: 0 });
    }
  });
});

describe("systemd install without root", () => {
  test("the executable run as nobody refuses with one line and exit 1", async () => {
    const setpriv = findTool("setpriv");
    if (!setpriv || process.getuid?.() !== 0) {
      console.warn("skip: needs setpriv (util-linux) and a root test run to drop to uid 65534");
      return;
    }
    const wrapper = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"];
    const run = await runBinary(setup.binary.bin, ["systemd", "install"], { cwd: setup.binary.dir, wrapper });
    expect(run.exitCode).toBe(1);
    expect(run.stderr.trim().split("\n")).toEqual([expect.stringContaining("systemd install needs root")]);
    expect(run.stderr).toContain("--root DIR");
  });

  test("installSystemd with a non-root uid throws before touching anything", () => {
    const calls: string[][] = [];
    const opts: SystemdOptions = {
      root: null,
      uid: 1000,
      exec: ["/usr/local/bin/mailgw"],
      settings: new Map(),
      version: "test",
      runSystemctl: (args) => {
        calls.push([...args]);
        return { ok: true, detail: "" };
      },
    };
    expect(() => installSystemd(opts)).toThrow("needs root");
    expect(calls).toEqual([]);
  });

  test("an executable the hardened service cannot see (/home, /root, /tmp): refused on the live system, a warning below --root", () => {
    const calls: string[][] = [];
    const opts = (exec: string[], root: string | null): SystemdOptions => ({
      root, uid: 0, exec, settings: new Map(), version: "test",
      runSystemctl: (args) => (calls.push([...args]), { ok: true, detail: "" }),
    });
    for (const exec of [["/home/alice/mailgw"], ["/root/mailgw"], ["/tmp/x/bun", "/tmp/x/src/main.ts"]]) {
      expect(() => installSystemd(opts(exec, null))).toThrow("ProtectHome=yes and PrivateTmp=yes hide");
    }
    expect(calls).toEqual([]); // thrown before anything was written or reloaded
    const root = newRoot();
    const report = installSystemd(opts(["/home/alice/mailgw"], root));
    expect(report.warnings).toEqual([expect.stringContaining("the service could not start /home/alice/mailgw")]);
    expect(existsSync(join(root, "etc/systemd/system/mailgw.service"))).toBe(true);
  });
});

describe("--root with an empty value", () => {
  // join("", "/etc/…") is the live /etc: `--root "$pkgdir"` with the variable unset once
  // installed onto the machine running it, past the live system's checks.
  test("rootOption refuses it; `/` is the live system; a directory is resolved", () => {
    for (const raw of ["", "   ", true]) expect(() => rootOption(raw)).toThrow("--root needs a directory");
    expect(rootOption(undefined)).toBeNull();
    expect(rootOption("/")).toBeNull();
    expect(rootOption("/srv/pkg/")).toBe("/srv/pkg");
  });

  // --print never writes, so a regression here cannot touch the live /etc.
  test.each([
    [["--root", ""], "mailgw: --root needs a directory (it was given an empty value); leave --root out to act on this system"],
    // Given last with nothing after it: refused by the argument check before systemd's own.
    [["--root"], "mailgw: --root needs a value (see mailgw systemd install --help)"],
  ])("the executable with %p: exit 1, one line, nothing printed", async (flags, message) => {
    const run = await runBinary(setup.binary.bin, ["systemd", "install", "--print", ...flags], { cwd: setup.binary.dir });
    expect(run.exitCode).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr.trim()).toBe(message);
  });
});

describe("ExecStart quoting", () => {
  test.each([
    ["/usr/local/bin/mailgw", "/usr/local/bin/mailgw"],
    ["/opt/mail gw/mailgw", '"/opt/mail gw/mailgw"'],
    ["/opt/100%/mailgw", "/opt/100%%/mailgw"],
    ["/opt/$HOME/mailgw", "/opt/$$HOME/mailgw"],
    ['/opt/a"b/mailgw', '"/opt/a\\"b/mailgw"'],
  ])("%s → %s", (input, quoted) => {
    expect(quoteExecArg(input)).toBe(quoted);
  });
});
