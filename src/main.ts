#!/usr/bin/env bun
/**
 * mailgw CLI root: wiring only. Each command lives in src/cli/<name>.ts and is loaded
 * lazily so `mailgw rules lint` does not pay for the SMTP stack.
 */
// First: for `serve`, stop signals are caught from here on (see serve/early-signals.ts).
import "./serve/early-signals.ts";
import { defineCommand } from "citty";
import { runCli } from "./cli/run-main.ts";
import { VERSION_STRING } from "./version.ts";

const main = defineCommand({
  meta: { name: "mailgw", version: VERSION_STRING, description: "Inbound mail gateway: SMTP in, rules, archive / forward / webhook" },
  subCommands: {
    // cli-commands:start (one line per command; keep sorted)
    healthcheck: () => import("./cli/healthcheck.ts").then((m) => m.default),
    queue: () => import("./cli/queue.ts").then((m) => m.default),
    rules: () => import("./cli/rules.ts").then((m) => m.default),
    serve: () => import("./cli/serve.ts").then((m) => m.default),
    systemd: () => import("./cli/systemd.ts").then((m) => m.default),
    test: () => import("./cli/test.ts").then((m) => m.default),
    version: () => import("./cli/version.ts").then((m) => m.default),
    // cli-commands:end
  },
});

void runCli(main);
