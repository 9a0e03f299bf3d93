/**
 * The Dockerfile, .dockerignore and docker-compose.yml checked for what SPEC §7 and issue 6
 * require. No Docker engine runs here, so this reads the instructions; the compiled executable
 * the build stage produces is exercised by test/e2e/binary-*.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { VARIABLES } from "../../src/config/variables.ts";
import { STOP_TIMEOUT_SECONDS } from "../../src/systemd/unit.ts";
import { REPO_ROOT } from "./binary.ts";

interface Instruction {
  keyword: string;
  args: string;
}

/** Instructions in order: comments dropped, `\` continuations joined. */
function parseDockerfile(text: string): Instruction[] {
  const joined = text
    .split("\n")
    .filter((line) => !line.trimStart().startsWith("#"))
    .join("\n")
    .replace(/\\\n/g, " ");
  return joined
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const m = /^(\S+)\s*(.*)$/.exec(line);
      return { keyword: (m?.[1] ?? "").toUpperCase(), args: (m?.[2] ?? "").replace(/\s+/g, " ") };
    });
}

const instructions = parseDockerfile(readFileSync(join(REPO_ROOT, "Dockerfile"), "utf8"));
const lastFrom = instructions.findLastIndex((i) => i.keyword === "FROM");
const buildStage = instructions.slice(0, lastFrom);
const runtimeStage = instructions.slice(lastFrom);
const argsOf = (stage: Instruction[], keyword: string): string[] => stage.filter((i) => i.keyword === keyword).map((i) => i.args);

/** ENV KEY=VALUE pairs of the runtime stage. */
function runtimeEnv(): Map<string, string> {
  const env = new Map<string, string>();
  for (const args of argsOf(runtimeStage, "ENV")) {
    for (const pair of args.split(" ")) {
      const eq = pair.indexOf("=");
      if (eq > 0) env.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
  }
  return env;
}

describe("Dockerfile", () => {
  test("multi-stage: the build stage installs with the lockfile and compiles", () => {
    const froms = argsOf(instructions, "FROM");
    expect(froms.length).toBeGreaterThanOrEqual(2);
    expect(froms[0]).toMatch(/ AS build$/i);
    expect(argsOf(buildStage, "COPY")).toContain("package.json package-lock.json ./");
    const runs = argsOf(buildStage, "RUN").join(" && ");
    expect(runs).toContain("npm ci");
    expect(runs).toContain("npm run build");
    expect(runs).toContain("--version");
  });

  test("runtime: slim image carrying only the executable, rules and the data dir, as a non-root user", () => {
    expect(runtimeStage[0]?.args).toMatch(/distroless|-slim/);
    const copies = argsOf(runtimeStage, "COPY");
    expect(copies.every((c) => c.includes("--from=build"))).toBe(true);
    expect(copies.map((c) => c.split(" ").slice(-1)[0])).toEqual(["/app/data", "/app/mailgw", "/app/rules.yaml"]);
    const users = argsOf(runtimeStage, "USER");
    expect(users.length).toBe(1);
    expect(users[0]).not.toMatch(/^(root|0)(:|$)/);
  });

  test("WORKDIR, VOLUME, EXPOSE, HEALTHCHECK, entrypoint", () => {
    expect(argsOf(runtimeStage, "WORKDIR")).toEqual(["/app"]);
    expect(argsOf(runtimeStage, "VOLUME")).toEqual(["/app/data"]);
    expect(argsOf(runtimeStage, "EXPOSE")).toEqual(["2525 3000"]);
    const health = argsOf(runtimeStage, "HEALTHCHECK");
    expect(health.length).toBe(1);
    expect(health[0]).toEndWith('CMD ["/app/mailgw","healthcheck"]');
    // A hung check is a failure within seconds (mailgw healthcheck itself gives up after 3 s).
    const seconds = (opt: string) => Number(new RegExp(`--${opt}=(\\d+)s`).exec(health[0] ?? "")?.[1]);
    expect(seconds("timeout")).toBeGreaterThan(3);
    expect(seconds("timeout")).toBeLessThan(seconds("interval"));
    // docker stop must let serve drain its sessions (SIGTERM), never kill it outright.
    expect(argsOf(runtimeStage, "STOPSIGNAL")).toEqual(["SIGTERM"]);
    expect(argsOf(runtimeStage, "ENTRYPOINT")).toEqual(['["/app/mailgw"]']);
    expect(argsOf(runtimeStage, "CMD")).toEqual(['["serve"]']);
  });

  test("ENV defaults match SPEC §2 (VARIABLES), HTTP_HOST=0.0.0.0, paths under /app, no secrets", () => {
    const env = runtimeEnv();
    const containerValues: Record<string, string> = {
      HTTP_HOST: "0.0.0.0",
      DATA_DIR: "/app/data",
      RULES_FILE: "/app/rules.yaml",
    };
    // Unset on purpose: the database then follows DATA_DIR (/app/data/mail-gateway.db), so
    // `-e DATA_DIR=/srv/data -v vol:/srv/data` moves it too instead of leaving it behind.
    expect(env.has("DATABASE_URL")).toBe(false);
    for (const v of VARIABLES) {
      if (v.name === "DATABASE_URL") continue;
      const expected = containerValues[v.name] ?? v.default;
      if (v.secret) expect({ name: v.name, set: env.has(v.name) }).toEqual({ name: v.name, set: false });
      else if (expected !== "") expect({ name: v.name, value: env.get(v.name) }).toEqual({ name: v.name, value: expected });
    }
    const known = new Set(VARIABLES.map((v) => v.name));
    expect([...env.keys()].filter((k) => !known.has(k))).toEqual([]);
  });
});

describe(".dockerignore", () => {
  const patterns = readFileSync(join(REPO_ROOT, ".dockerignore"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));

  test("keeps local state and secrets out of the build context", () => {
    // config/ and certs/ are docker-compose.yml's: relay password, TLS private key.
    for (const p of ["node_modules", ".git", "dist", "data", ".env", "config", "certs"]) expect(patterns).toContain(p);
  });

  test("keeps what the build stage needs", () => {
    const needed = ["package.json", "package-lock.json", "tsconfig.json", "src", "scripts", "rules.yaml"];
    for (const path of needed) expect({ path, ignored: patterns.some((p) => new Bun.Glob(p).match(path)) }).toEqual({ path, ignored: false });
  });
});

describe("docker-compose.yml", () => {
  const compose = parseYaml(readFileSync(join(REPO_ROOT, "docker-compose.yml"), "utf8")) as {
    services?: Record<string, { volumes?: string[]; ports?: string[]; environment?: Record<string, string>; init?: boolean; stop_grace_period?: string }>;
    volumes?: Record<string, unknown>;
  };

  test("example with data and certs volumes, SMTP published, stats on loopback", () => {
    const service = compose.services?.mailgw;
    if (!service) throw new Error("docker-compose.yml: no mailgw service");
    const volumes = service.volumes ?? [];
    expect(volumes.some((v) => v.startsWith("mailgw-data:/app/data"))).toBe(true);
    expect(volumes.some((v) => v.includes(":/app/certs"))).toBe(true);
    expect(Object.keys(compose.volumes ?? {})).toContain("mailgw-data");
    expect(service.ports).toContain("25:2525");
    expect(service.ports).toContain("127.0.0.1:3000:3000");
    expect(service.environment?.SMTP_TLS_CERT).toStartWith("/app/certs/");
    // PID 1 ignores signals it has no handler for yet: an init forwards them (and reaps).
    expect(service.init).toBe(true);
  });

  test("a stop gets as long as systemd gives it, in the compose file and in the README's docker run", () => {
    // Sessions get 10 s, then deliveries 10 s more: a stalled client and a hung webhook made
    // serve's stop take 20 s, and Docker's default 10 s ended it with SIGKILL (exit 137).
    expect(compose.services?.mailgw?.stop_grace_period).toBe(`${STOP_TIMEOUT_SECONDS}s`);
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8").replace(/\\\n\s*/g, " ");
    const runs = readme.split("\n").filter((l) => l.startsWith("docker run ") && / mailgw$/.test(l));
    expect(runs.length).toBeGreaterThan(0);
    for (const run of runs) expect(run).toContain(`--stop-timeout ${STOP_TIMEOUT_SECONDS} `);
  });
});
