/**
 * `mailgw rules lint|list|add` run as a real subprocess (`bun src/main.ts rules …`) in a
 * temporary directory: exit codes, output formats, comment-preserving add, refusal that
 * leaves the file byte-identical, repeatable --forward-to, refusal of a missing or non-UTF-8 file.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { existsSync, symlinkSync } from "node:fs";
import { chmod, chown, cp, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_RULES_FILE_BYTES } from "../../src/rules/schema.ts";
import { copyBinaryToTemp, ensureBinary } from "../packaging/binary.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const MAIN = join(ROOT, "src/main.ts");
const FIXTURES = join(ROOT, "test/fixtures/rules");

let dir = "";

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mailgw-rules-cli-"));
  await cp(join(ROOT, "rules.yaml"), join(dir, "rules.yaml"));
  for (const name of ["commented.yaml", "invalid.yaml", "valid.yaml"]) await cp(join(FIXTURES, name), join(dir, name));
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
}, 60_000);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function mailgw(...args: string[]): Promise<Run> {
  return mailgwUnder([], ...args);
}

/** `prefix` runs the command inside another program (setpriv as another user, unshare). */
async function mailgwUnder(prefix: string[], ...args: string[]): Promise<Run> {
  return run([...prefix, process.execPath, MAIN, "rules", ...args]);
}

/**
 * The compiled executable, copied where another user can run it (the checkout may sit in a
 * 0700 directory, as CI's mktemp clone does), under `prefix` (setpriv, unshare).
 */
async function binaryUnder(prefix: string[], ...args: string[]): Promise<Run> {
  const binary = copyBinaryToTemp();
  try {
    return await run([...prefix, binary.bin, "rules", ...args]);
  } finally {
    binary.cleanup();
  }
}

async function run(command: string[]): Promise<Run> {
  const child = Bun.spawn(command, {
    cwd: dir,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1", LOG_LEVEL: "info" },
  });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, stdout, stderr };
}

const CONDITIONS = '[{"field":"subject","operator":"contains","value":"invoice"}]';

describe("rules lint", () => {
  test("defaults to ./rules.yaml; the shipped file has warnings only → exit 0", async () => {
    const run = await mailgw("lint");
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^rules\.yaml:\d+:\d+: warning: .*\[forward-loop\]$/m);
    expect(run.stdout).toContain("0 errors, 2 warnings in 1 file");
  });

  test("several files; any error → exit 1 with file:line:col", async () => {
    const run = await mailgw("lint", "valid.yaml", "invalid.yaml");
    expect(run.code).toBe(1);
    expect(run.stdout).toContain("invalid.yaml:4:13: error: action forward needs forward_to");
    expect(run.stdout).toContain("invalid.yaml:6:51: error: invalid regex '(':");
    expect(run.stdout).toContain("2 errors, 0 warnings in 2 files");
  });

  test("an unreadable file → exit 2", async () => {
    const run = await mailgw("lint", "valid.yaml", "missing.yaml");
    expect(run.code).toBe(2);
    expect(run.stdout).toContain("missing.yaml:1:1: error: cannot read rules file (ENOENT) [file-unreadable]");
  });

  test("a FIFO or a device is not read (it hung, or read /dev/zero until memory ran out) → exit 2", async () => {
    execFileSync("mkfifo", [join(dir, "fifo.yaml")]);
    symlinkSync("/dev/zero", join(dir, "zero.yaml"));
    const run = await mailgw("lint", "fifo.yaml", "zero.yaml");
    expect(run.code).toBe(2);
    expect(run.stdout).toContain("fifo.yaml:1:1: error: cannot read rules file (not a regular file) [file-unreadable]");
    expect(run.stdout).toContain("zero.yaml:1:1: error: cannot read rules file (not a regular file) [file-unreadable]");
  });

  // A file saved as Latin-1 (Windows editors) has its bad byte deep inside, not at 1:1.
  test("a file that is not UTF-8 is pointed at its first bad byte", async () => {
    const text = "domains: [company.com]\nrules:\n  - { name: de, action: archive, conditions: [{ field: subject, operator: contains, value: \"Rechnung f\xfcr\" }] }\n";
    await writeFile(join(dir, "latin1-lint.yaml"), Buffer.from(text, "latin1"));
    const run = await mailgw("lint", "latin1-lint.yaml");
    expect(run.code).toBe(1);
    expect(run.stdout).toContain("latin1-lint.yaml:3:103: error: rules file is not valid UTF-8 [not-utf8]");
  });

  // A BOM is not a column: every other diagnostic counts from after it (the decoder drops it),
  // and an editor shows none. The not-UTF-8 position counted it on line 1 (col 15 here).
  test("a bad byte on line 1 after a BOM is at the column an editor shows", async () => {
    const text = "domains: [caf\xe9.com]\nrules: []\n";
    await writeFile(join(dir, "bom-latin1.yaml"), Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text, "latin1")]));
    const run = await mailgw("lint", "bom-latin1.yaml");
    expect(run.code).toBe(1);
    expect(run.stdout).toContain("bom-latin1.yaml:1:14: error: rules file is not valid UTF-8 [not-utf8]");
  });

  test("--format json", async () => {
    const run = await mailgw("lint", "--format", "json", "invalid.yaml");
    expect(run.code).toBe(1);
    const parsed = JSON.parse(run.stdout) as { diagnostics: { line: number; col: number; code: string }[]; summary: unknown };
    expect(parsed.diagnostics.map((d) => [d.line, d.col, d.code])).toEqual([
      [4, 13, "missing-forward-to"],
      [6, 51, "invalid-regex"],
    ]);
    expect(parsed.summary).toEqual({ files: 1, errors: 2, warnings: 0 });
  });

  test("a huge name and a value with a newline: one line each, the value cut with its length, at line:col", async () => {
    const text = `domains: [company.com]\nrules:\n  - name: ${"x".repeat(50_000)}_\n    action: drop\n    conditions: [{ field: "sub\\nject", operator: exists }]\n`;
    await writeFile(join(dir, "huge-name.yaml"), text);
    const run = await mailgw("lint", "huge-name.yaml");
    expect(run.code).toBe(1);
    expect(run.stdout.split("\n")).toEqual([
      `huge-name.yaml:3:11: error: rule name '${"x".repeat(60)}…' (50,001 characters) must be 1 to 64 characters of a-z, 0-9 and - [invalid-name]`,
      expect.stringMatching(/^huge-name\.yaml:5:27: error: unknown field 'sub\\u000aject' \(did you mean 'subject'\?\); fields: .* \[unknown-field\]$/),
      "2 errors, 0 warnings in 1 file",
      "",
    ]);
    const github = await mailgw("lint", "--format", "github", "huge-name.yaml");
    expect(github.stdout.split("\n").filter((l) => l.startsWith("::error")).map((l) => l.length < 400)).toEqual([true, true]);
  });

  test("--format github", async () => {
    const run = await mailgw("lint", "--format=github", "invalid.yaml", "rules.yaml");
    expect(run.code).toBe(1);
    expect(run.stdout).toContain("::error file=invalid.yaml,line=6,col=51,title=invalid-regex::invalid regex '(':");
    expect(run.stdout).toMatch(/^::warning file=rules\.yaml,line=\d+,col=\d+,title=forward-loop::/m);
  });
});

// As serve and `mailgw test` read it: a lint in the gateway's directory checks the gateway's file.
describe("RULES_FILE (environment or .env) is the default file of lint, list and add", () => {
  test("lint, list and add with no file act on RULES_FILE from .env; the environment outranks .env", async () => {
    const where = await mkdtemp(join(dir, "rules-file-"));
    await mkdir(join(where, "conf"));
    await cp(join(dir, "valid.yaml"), join(where, "conf", "gw.yaml"));
    await writeFile(join(where, ".env"), "RULES_FILE=conf/gw.yaml\n");
    const here = async (args: string[], env: Record<string, string> = {}): Promise<Run> => {
      const child = Bun.spawn([process.execPath, MAIN, "rules", ...args], { cwd: where, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1", ...env } });
      const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
      return { code, stdout, stderr };
    };
    expect((await here(["lint"])).code).toBe(0); // there is no ./rules.yaml here: exit 2 if it were read
    expect((await here(["list"])).stdout).not.toBe("");
    const added = await here(["add", "from-env", "--action", "archive", "--conditions", CONDITIONS]);
    expect(added.stdout).toBe("added rule 'from-env' to conf/gw.yaml\n");
    expect(await readFile(join(where, "conf", "gw.yaml"), "utf8")).toContain("from-env");
    const invalid = await here(["lint"], { RULES_FILE: join(dir, "invalid.yaml") });
    expect(invalid.code).toBe(1);
    expect(invalid.stdout).toContain("invalid.yaml:");
  });
});

describe("rules list", () => {
  test("one line per rule in evaluation order, then the default", async () => {
    const run = await mailgw("list");
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^1000 +reject-spam-subject +reject +spam +"Message rejected as spam" +subject regex \/\^\\\[SPAM\\\]\/i$/);
    expect(lines[1]).toMatch(/^ 100 +route-quote-to-sales +forward +sales +sales@company\.com +subject contains "견적"$/);
    expect(lines[2]).toMatch(/^ {3}1 +catch-all +forward +inbox +inbox@company\.com +subject regex \/\.\*\/i$/);
    expect(lines[3]).toMatch(/^ {3}- +\(default\) +archive +default +- +no rule matched$/);
  });

  test("shows not, match any, webhook targets and +archive", async () => {
    const run = await mailgw("list", "valid.yaml");
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('https://erp.example/inbound +archive  to equals "orders@company.com" AND not client_ip in_cidr "192.0.2.0/24, 2001:db8::/32"');
    expect(run.stdout).toContain('subject contains "urgent" OR header:x-priority equals "1"');
  });

  test("a file with errors → exit 1, diagnostics on stderr", async () => {
    const run = await mailgw("list", "invalid.yaml");
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toContain("invalid.yaml:6:51: error:");
    expect(run.stderr.trimEnd().split("\n").at(-1)).toMatch(/^mailgw: invalid\.yaml has errors/);
  });
});

describe("rules add", () => {
  test("appends the rule, keeps comments and formatting, repeatable --forward-to", async () => {
    const file = join(dir, "add-ok.yaml");
    const before = await readFile(join(FIXTURES, "commented.yaml"), "utf8");
    await writeFile(file, before);
    const run = await mailgw(
      "add",
      "invoices",
      "--action",
      "forward",
      "--priority",
      "50",
      "--category",
      "billing",
      "--forward-to",
      "ap@other.example",
      "--forward-to=cfo@other.example",
      "--forward-to",
      "audit@other.example,archive@other.example",
      "--conditions",
      CONDITIONS,
      "--file",
      "add-ok.yaml",
    );
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toBe("added rule 'invoices' to add-ok.yaml\n");
    const after = await readFile(file, "utf8");
    const at = before.indexOf("  # a commented-out rule");
    expect(after.slice(0, at)).toBe(before.slice(0, at));
    expect(after.endsWith(before.slice(at))).toBe(true);
    expect(after.slice(at, after.length - (before.length - at))).toBe(
      "  - name: invoices\n    priority: 50\n    category: billing\n    action: forward\n" +
        "    forward_to: [ap@other.example, cfo@other.example, audit@other.example, archive@other.example]\n" +
        "    conditions:\n      - { field: subject, operator: contains, value: invoice }\n",
    );
    const lint = await mailgw("lint", "add-ok.yaml");
    expect(lint.code).toBe(0);
    expect(await readdir(dir)).not.toContainEqual(expect.stringMatching(/\.tmp$/));
  });

  test("a rule that would not lint → exit 1, file byte-identical", async () => {
    const file = join(dir, "add-refused.yaml");
    const before = await readFile(join(FIXTURES, "commented.yaml"));
    await writeFile(file, before);
    const attempts: string[][] = [
      ["bad-regex", "--action", "drop", "--conditions", '[{"field":"subject","operator":"regex","value":"("}]'],
      ["no-target", "--action", "forward", "--conditions", CONDITIONS],
      ["bad-address", "--action", "forward", "--forward-to", "nobody", "--conditions", CONDITIONS],
      ["reject-spam-subject", "--action", "drop", "--conditions", CONDITIONS],
      ["bad-priority", "--action", "drop", "--priority", "soon", "--conditions", CONDITIONS],
      ["bad-json", "--action", "drop", "--conditions", "[{field: subject}"],
    ];
    for (const args of attempts) {
      const run = await mailgw("add", ...args, "--file", "add-refused.yaml");
      expect(run.code).toBe(1);
      expect(run.stderr.trimEnd().split("\n").at(-1)).toMatch(/^mailgw: /);
      expect(Buffer.compare(await readFile(file), before)).toBe(0);
    }
    expect((await readdir(dir)).filter((name) => name.endsWith(".tmp"))).toEqual([]);
  });

  test("a rule that would take a non-ASCII file past the size limit in bytes → exit 1, file byte-identical", async () => {
    // A Korean company's file: 3 UTF-8 bytes per Hangul character, so the byte size is
    // far above the character count. The limit is in bytes (serve refuses such a file).
    const head = "domains: [company.com]\ndefault: { action: archive, category: default }\nrules:\n";
    const rule = (i: number): string => `  - name: kr-${i}\n    action: archive\n    conditions:\n      - { field: subject, operator: contains, value: 견적서요청번호${i} }\n`;
    let text = head;
    for (let i = 0; Buffer.byteLength(text + rule(i)) < MAX_RULES_FILE_BYTES - 300; i++) text += rule(i);
    const file = join(dir, "add-too-big.yaml");
    await writeFile(file, text);
    expect((await mailgw("lint", "add-too-big.yaml")).code).toBe(0);
    const value = "견적서 ".repeat(60);
    const conditions = JSON.stringify([{ field: "subject", operator: "contains", value }]);
    const run = await mailgw("add", "one-more", "--action", "archive", "--conditions", conditions, "--file", "add-too-big.yaml");
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`larger than ${MAX_RULES_FILE_BYTES} bytes`);
    expect(await readFile(file, "utf8")).toBe(text);
  }, 30_000);

  test("a missing --file is refused, not created; a file that is not UTF-8 is refused, not rewritten", async () => {
    const missing = await mailgw("add", "typo", "--action", "drop", "--conditions", CONDITIONS, "--file", "rule.yaml");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe("mailgw: rule.yaml does not exist; nothing written (give the gateway's rules file with --file)\n");
    expect(existsSync(join(dir, "rule.yaml"))).toBe(false);
    const latin1 = Buffer.from("domains: [company.com]\nrules:\n  - { name: de, action: archive, conditions: [{ field: subject, operator: contains, value: \"Rechnung f\xfcr\" }] }\n", "latin1");
    await writeFile(join(dir, "latin1.yaml"), latin1);
    const run = await mailgw("add", "other", "--action", "drop", "--conditions", CONDITIONS, "--file", "latin1.yaml");
    expect(run.code).toBe(1);
    expect(run.stderr).toBe("mailgw: latin1.yaml: rules file is not valid UTF-8; nothing written\n");
    expect(Buffer.compare(await readFile(join(dir, "latin1.yaml")), latin1)).toBe(0);
  });

  // A rules file installed 0640 root:mailgw must stay readable by the service after
  // `sudo mailgw rules add`; a group-writable one keeps its mode whatever the umask.
  const isRoot = process.getuid?.() === 0;
  if (!isRoot) console.warn("skipped: rules add keeps the owner and group (needs root to chown the fixture)");
  test.skipIf(!isRoot)("keeps the file's mode, owner and group", async () => {
    const path = join(dir, "owned.yaml");
    await writeFile(path, "domains: [company.com]\nrules:\n");
    await chown(path, 4321, 4322);
    await chmod(path, 0o640);
    expect((await mailgw("add", "owned", "--action", "drop", "--conditions", CONDITIONS, "--file", "owned.yaml")).code).toBe(0);
    const after = await stat(path);
    expect({ uid: after.uid, gid: after.gid, mode: after.mode & 0o7777 }).toEqual({ uid: 4321, gid: 4322, mode: 0o640 });
    await chmod(path, 0o664);
    expect((await mailgw("add", "shared", "--action", "drop", "--conditions", CONDITIONS, "--file", "owned.yaml")).code).toBe(0);
    expect((await stat(path)).mode & 0o7777).toBe(0o664);
    expect(await readFile(path, "utf8")).toContain("name: shared");
  });

  // Containers: /app belongs to root, the file alone may be writable or bind-mounted on its own.
  test.skipIf(!isRoot)("a directory the user cannot write, or a file bind-mounted alone: refused naming why; file unchanged", async () => {
    const sub = join(dir, "locked");
    await chmod(dir, 0o755); // mkdtemp's 0700 would hide the file itself from the other user
    await mkdir(sub, { mode: 0o755 });
    const path = join(sub, "rules.yaml");
    await writeFile(path, "domains: [company.com]\nrules:\n", { mode: 0o666 });
    await chmod(path, 0o666);
    const before = await readFile(path, "utf8");
    const asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    const denied = await binaryUnder(asNobody, "add", "denied", "--action", "drop", "--conditions", CONDITIONS, "--file", path);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toStartWith(`mailgw: cannot write ${path}: the new version is written beside it in ${sub} and renamed over it, so that directory must be writable (EACCES`);
    expect(denied.stderr).toEndWith("; file unchanged\n");
    const bindMounted = ["unshare", "-m", "--propagation", "private", "sh", "-c", 'mount --bind "$0" "$0" && exec "$@"', path];
    const busy = await binaryUnder(bindMounted, "add", "busy", "--action", "drop", "--conditions", CONDITIONS, "--file", path);
    expect(busy.stderr).toBe(`mailgw: cannot replace ${path}: it is a mount point of its own (a file bind-mounted alone, as docker -v FILE:FILE); mount its directory instead; file unchanged\n`);
    expect(await readFile(path, "utf8")).toBe(before);
    expect((await readdir(sub)).sort()).toEqual(["rules.yaml"]);
  }, 120_000);

  test.skipIf(!isRoot)("its owner outside its group is told the group is the problem, not to run as its owner", async () => {
    const sub = join(dir, "owners");
    await chmod(dir, 0o755);
    await mkdir(sub, { mode: 0o755 });
    await chown(sub, 65534, 65534);
    const path = join(sub, "rules.yaml");
    await writeFile(path, "domains: [company.com]\nrules:\n");
    await chown(path, 65534, 0);
    const run = await binaryUnder(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"], "add", "grp", "--action", "drop", "--conditions", CONDITIONS, "--file", path);
    expect(run.stderr).toStartWith(`mailgw: cannot keep the owner and group of ${path} (65534:0): EPERM`);
    expect(run.stderr).toEndWith("; run as root, or as its owner while a member of its group; file unchanged\n");
  }, 120_000);

  test("webhook with --url, --archive and --reject-message; a symlinked file stays a symlink", async () => {
    const target = join(dir, "real-rules.yaml");
    await writeFile(target, "domains: [company.com]\nrules:\n");
    await symlink(target, join(dir, "linked.yaml"));
    const hook = await mailgw("add", "hook", "--action", "webhook", "--url", "https://erp.example/in", "--archive", "--conditions", CONDITIONS, "--file", "linked.yaml");
    expect(hook.code).toBe(0);
    const reject = await mailgw("add", "spam", "--action", "reject", "--priority", "9", "--reject-message", "No spam here", "--conditions", CONDITIONS, "--file", "linked.yaml");
    expect(reject.code).toBe(0);
    const list = await mailgw("list", "linked.yaml");
    expect(list.stdout.split("\n").slice(0, 2)).toEqual([
      '9  spam       reject   spam     "No spam here"                   subject contains "invoice"',
      '0  hook       webhook  hook     https://erp.example/in +archive  subject contains "invoice"',
    ]);
    expect(await readFile(target, "utf8")).toContain("name: spam");
    expect((await lstat(join(dir, "linked.yaml"))).isSymbolicLink()).toBe(true);
  });

  test("--loop-ok: a forward into domains, meant (the relay delivers it elsewhere), adds without the forward-loop warning", async () => {
    const file = join(dir, "loop-ok.yaml");
    await writeFile(file, "domains: [company.com]\nrules:\n");
    const warned = await mailgw("add", "to-ap", "--action", "forward", "--forward-to", "ap@company.com", "--conditions", CONDITIONS, "--file", "loop-ok.yaml");
    expect(warned.code).toBe(0);
    expect(warned.stderr).toContain("[forward-loop]");
    const meant = await mailgw("add", "to-cfo", "--action", "forward", "--forward-to", "cfo@company.com", "--loop-ok", "--conditions", CONDITIONS, "--file", "loop-ok.yaml");
    expect(meant.code).toBe(0);
    expect(meant.stderr).not.toContain("to-cfo");
    expect(await readFile(file, "utf8")).toContain("loop_ok: true");
  });

  // Provisioning scripts (Ansible with forks, parallel CI jobs) run several adds at once: each
  // read the file, appended its rule and renamed its version over the others'. All said "added".
  test("concurrent adds to one file: every rule is kept", async () => {
    const path = join(dir, "concurrent.yaml");
    await writeFile(path, "domains: [company.com]\nrules:\n");
    const names = Array.from({ length: 6 }, (_, i) => `par-${i}`);
    const runs = await Promise.all(names.map((name) => run([ensureBinary(), "rules", "add", name, "--action", "drop", "--conditions", CONDITIONS, "--file", path])));
    expect(runs.map((r) => r.code)).toEqual(names.map(() => 0));
    const list = await mailgw("list", "concurrent.yaml");
    expect(list.code).toBe(0);
    for (const name of names) expect(list.stdout).toContain(` ${name} `);
    expect((await readdir(dir)).filter((f) => f.startsWith(".concurrent.yaml"))).toEqual([]);
  }, 60_000);

  test("--help for every subcommand", async () => {
    for (const args of [["--help"], ["lint", "--help"], ["list", "--help"], ["add", "--help"]]) {
      const run = await mailgw(...args);
      expect(run.code).toBe(0);
      expect(run.stdout).toContain("USAGE");
    }
    expect((await mailgw("add", "--help")).stdout).toContain("--forward-to");
  });
});
