/**
 * Command-line strictness (src/cli/argv.ts, src/cli/action.ts): an option or argument a command
 * does not define is refused with one line and exit 1 instead of being ignored, and a failing
 * command's output reaches a slow pipe whole (process.exit used to cut it at 64 KiB). citty's own
 * usage errors (unknown command, missing argument) are one line too (src/cli/run-main.ts).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repeatedFlag, unexpectedArgument } from "../../src/cli/argv.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");
const dir = mkdtempSync(join(tmpdir(), "mailgw-argv-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }), 60_000);

function mailgw(...args: string[]) {
  const r = Bun.spawnSync([process.execPath, MAIN, ...args], { cwd: dir, env: { PATH: process.env.PATH ?? "", HOME: dir, NO_COLOR: "1" } });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

describe("unexpectedArgument", () => {
  const defs = {
    message: { type: "positional", required: false },
    to: { type: "string" },
    "client-ip": { type: "string" },
    json: { type: "boolean" },
  };
  test("accepts defined options in every spelling, values that look like options, `-` and `--`", () => {
    expect(unexpectedArgument(defs, ["m.eml", "--to", "a@b", "--client-ip=10.0.0.1", "--clientIp", "1.2.3.4", "--json"])).toBeNull();
    expect(unexpectedArgument(defs, ["--no-json", "-"])).toBeNull();
    expect(unexpectedArgument(defs, ["--to", "-5", "m.eml"])).toBeNull();
    expect(unexpectedArgument(defs, ["--", "-odd-name.eml"])).toBeNull();
  });
  test("names the first unknown option or extra argument", () => {
    expect(unexpectedArgument(defs, ["m.eml", "--client_ip", "10.0.0.1"])).toBe("unknown option --client_ip (did you mean --client-ip?)");
    expect(unexpectedArgument(defs, ["--mail-to", "a@b"])).toBe("unknown option --mail-to (did you mean --to?)");
    expect(unexpectedArgument(defs, ["-x"])).toBe("unknown option -x");
    expect(unexpectedArgument(defs, ["--bogus=1"])).toBe("unknown option --bogus");
    expect(unexpectedArgument(defs, ["a.eml", "b.eml"])).toBe("unexpected argument 'b.eml'");
    expect(unexpectedArgument({}, ["x"])).toBe("unexpected argument 'x'");
  });
  test("a switch given a value citty would misread (--json=no is true to it) is refused; =true and =false pass", () => {
    expect(unexpectedArgument(defs, ["--json=no"])).toBe("--json=no: --json is a switch, give it alone (or =true, =false)");
    expect(unexpectedArgument(defs, ["--json=0"])).toBe("--json=0: --json is a switch, give it alone (or =true, =false)");
    expect(unexpectedArgument(defs, ["--json=false", "m.eml"])).toBeNull();
    expect(unexpectedArgument(defs, ["--json=true"])).toBeNull();
    const run = mailgw("test", "m.eml", "--tls=no");
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("--tls=no: --tls is a switch");
  });
  test("an option that takes a value, given last with none, is refused (citty read it as not given)", () => {
    expect(unexpectedArgument(defs, ["m.eml", "--to"])).toBe("--to needs a value");
    expect(unexpectedArgument(defs, ["--to", "--", "m.eml"])).toBe("--to needs a value");
    const run = mailgw("queue", "list", "--state");
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("--state needs a value");
  });
  test("a FILE... positional takes any number", () => {
    expect(unexpectedArgument({ files: { type: "positional", valueHint: "FILE..." } }, ["a", "b", "c"])).toBeNull();
  });
  test("repeatedFlag collects every value, both spellings; a flag without a value is an error", () => {
    expect(repeatedFlag(["--to", "a@x", "--to=b@x", "m.eml", "--", "--to", "c@x"], ["to"])).toEqual(["a@x", "b@x"]);
    expect(() => repeatedFlag(["--to"], ["to"])).toThrow("--to needs a value");
  });
});

describe("commands refuse what they do not define", () => {
  test.each([
    [["serve", "--smtp-port", "25"], "unknown option --smtp-port (did you mean --port?) (see mailgw serve --help)"],
    [["test", "m.eml", "--client_ip", "10.0.0.1"], "unknown option --client_ip (did you mean --client-ip?) (see mailgw test --help)"],
    [["queue", "retry", "ID1", "ID2"], "unexpected argument 'ID2' (see mailgw queue retry --help)"],
    [["queue", "list", "--data_dir", "/var/lib/x"], "unknown option --data_dir (did you mean --data-dir?) (see mailgw queue list --help)"],
    [["rules", "list", "a.yaml", "b.yaml"], "unexpected argument 'b.yaml' (see mailgw rules list --help)"],
    [["version", "extra"], "unexpected argument 'extra' (see mailgw version --help)"],
    // citty's own usage errors: before, the whole usage on stdout and a colour-coded line.
    [["frob"], "unknown command 'frob': expected one of healthcheck, queue, rules, serve, systemd, test, version (see mailgw --help)"],
    [[], "no command given: expected one of healthcheck, queue, rules, serve, systemd, test, version (see mailgw --help)"],
    [["rules"], "no command given: expected one of lint, list, add (see mailgw rules --help)"],
    // An option where the command belongs: named, so a typo (--verison) shows.
    [["--bogus"], "no command given, only the option '--bogus': expected one of healthcheck, queue, rules, serve, systemd, test, version (see mailgw --help)"],
    [["rules", "--format=json"], "no command given, only the option '--format': expected one of lint, list, add (see mailgw rules --help)"],
    [["queue", "frob"], "unknown command 'frob': expected one of list, retry, drop (see mailgw queue --help)"],
    // Options before the command word: citty took the option's value for the command.
    [["queue", "--env-file", "prod.env", "list"], "options go after the command: mailgw queue list --env-file prod.env (see mailgw queue --help)"],
    [["rules", "--format", "json", "lint", "a.yaml"], "options go after the command: mailgw rules lint a.yaml --format json (see mailgw rules --help)"],
    [["--data-dir", "/srv/d", "queue", "list"], "options go after the command: mailgw queue list --data-dir /srv/d (see mailgw --help)"],
    [["rules", "add", "r1", "--conditions", "[]"], "missing required argument: --action (see mailgw rules add --help)"],
    [["rules", "lint", "--format", "bogus"], "invalid value for argument: --format (bogus). Expected one of: text, json, github (see mailgw rules lint --help)"],
  ])("mailgw %p → exit 1, one line", (args, message) => {
    const r = mailgw(...args);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 1, stderr: `mailgw: ${message}\n` });
    expect(r.stdout).toBe("");
  });
});

describe("a failing command's output reaches a slow pipe whole", () => {
  test("rules lint --format json with 1,500 errors, read 1 s late: valid JSON, exit 1", async () => {
    const rules = ["domains: [company.com]", "rules:"];
    for (let i = 0; i < 1500; i++) rules.push(`  - { name: r${i}, action: archive, conditions: [{ field: subject, operator: bogus, value: x }] }`);
    writeFileSync(join(dir, "many.yaml"), rules.join("\n") + "\n");
    // A shell pipe whose reader starts after 1 s (Bun.spawn's own pipe is read at once).
    const script = `"$0" "$1" rules lint --format json many.yaml | (sleep 1; cat); exit "\${PIPESTATUS[0]}"`;
    const child = Bun.spawn(["bash", "-c", script, process.execPath, MAIN], { cwd: dir, stdout: "pipe", stderr: "pipe" });
    const [stdout, code] = await Promise.all([new Response(child.stdout).text(), child.exited]);
    expect(code).toBe(1);
    expect(stdout.length).toBeGreaterThan(64 * 1024);
    const report = JSON.parse(stdout) as { diagnostics?: unknown[] } | unknown[];
    const diagnostics = Array.isArray(report) ? report : (report.diagnostics ?? []);
    expect(diagnostics.length).toBeGreaterThanOrEqual(1500);
  }, 30_000);
});

describe("every command has --help", () => {
  test.each([
    [["serve"]], [["test"]], [["queue", "list"]], [["queue", "retry"]], [["queue", "drop"]], [["rules", "lint"]],
    [["systemd", "install"]], [["systemd", "uninstall"]], [["healthcheck"]], [["version"]],
  ])("mailgw %p --help → usage on stdout, exit 0", (words) => {
    const r = mailgw(...words, "--help");
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    expect(r.stdout).toContain("USAGE");
    expect(r.stdout).toContain(`USAGE mailgw ${words.join(" ")}`); // the whole path, as typed
  });

  test("--help into a pipe or a file has no colour escapes, even without NO_COLOR", () => {
    const r = Bun.spawnSync([process.execPath, MAIN, "queue", "--help"], { env: { PATH: process.env.PATH ?? "", FORCE_COLOR: "1" } });
    expect(r.exitCode).toBe(0);
    expect(r.stdout.toString()).toContain("USAGE mailgw queue");
    expect(r.stdout.toString()).not.toContain("\x1b[");
  });
});
