/**
 * `mailgw systemd install|uninstall` (SPEC §1): wiring only. The unit text lives in
 * src/systemd/unit.ts, the file work in src/systemd/install.ts. Errors (no root, unwritable
 * path, bad port) end as one stderr line and exit 1 through cliAction.
 */
import { defineCommand } from "citty";
import { resolveRawValues } from "../config/config.ts";
import { VERSION_STRING } from "../version.ts";
import { cliAction } from "./action.ts";
import {
  hiddenExecReason,
  installSystemd,
  planUnit,
  resolveExec,
  rootOption,
  runSystemctl,
  uninstallSystemd,
  type SystemdOptions,
  type SystemdReport,
} from "../systemd/install.ts";

interface SystemdArgs {
  print?: boolean;
  root?: string;
  "exec-path"?: string;
  "smtp-port"?: string;
  "http-port"?: string;
}

const rootArg = (verb: string) => ({ type: "string", valueHint: "DIR", description: `${verb} the files below DIR instead of / (no root needed, no systemctl)` }) as const;

function options(args: SystemdArgs): SystemdOptions {
  const root = rootOption(args.root);
  const { exec, warning } = resolveExec(process.execPath, Bun.main, args["exec-path"]);
  if (warning) process.stderr.write(`mailgw: warning: ${warning}\n`);
  // Flags and the environment only: a .env in the directory install is run from (a dev
  // checkout's SMTP_PORT=2526) is that checkout's, not the service's, and was copied silently.
  const settings = resolveRawValues({ flags: { SMTP_PORT: args["smtp-port"], HTTP_PORT: args["http-port"] }, envFile: null });
  const portFlags = new Map<string, string>();
  if (args["smtp-port"] !== undefined) portFlags.set("SMTP_PORT", args["smtp-port"].trim());
  if (args["http-port"] !== undefined) portFlags.set("HTTP_PORT", args["http-port"].trim());
  return {
    root,
    uid: process.getuid?.() ?? 0,
    exec,
    settings,
    version: VERSION_STRING,
    runSystemctl,
    portFlags,
  };
}

function printReport(report: SystemdReport): void {
  for (const path of report.written) process.stdout.write(`wrote   ${path}\n`);
  for (const path of report.removed) process.stdout.write(`removed ${path}\n`);
  for (const path of report.kept) process.stdout.write(`kept    ${path} (exists; not changed)\n`);
  for (const warning of report.warnings) process.stderr.write(`mailgw: warning: ${warning}\n`);
  for (const step of report.nextSteps) process.stdout.write(`next:   ${step}\n`);
}

const install = defineCommand({
  meta: { name: "install", description: "Write mailgw.service, /etc/mailgw/mailgw.env (if absent) and /etc/mailgw/rules.yaml (if absent); systemctl daemon-reload" },
  args: {
    print: { type: "boolean", description: "print the unit to stdout; write nothing" },
    root: rootArg("write"),
    "exec-path": { type: "string", valueHint: "PATH", description: "absolute path of mailgw for ExecStart (default: this executable)" },
    "smtp-port": { type: "string", valueHint: "PORT", description: "SMTP_PORT the service will use (CAP_NET_BIND_SERVICE below 1024)" },
    "http-port": { type: "string", valueHint: "PORT", description: "HTTP_PORT the service will use" },
  },
  run: cliAction<SystemdArgs>((args) => {
    const opts = options(args);
    if (args.print) {
      const hidden = hiddenExecReason(opts.exec);
      if (hidden !== null) process.stderr.write(`mailgw: warning: ${hidden}\n`);
      process.stdout.write(planUnit(opts).unit);
      return 0;
    }
    printReport(installSystemd(opts));
    return 0;
  }),
});

const uninstall = defineCommand({
  meta: { name: "uninstall", description: "Stop and disable the service and remove mailgw.service (settings and data are kept)" },
  args: { root: rootArg("remove") },
  run: cliAction<SystemdArgs>((args) => {
    printReport(uninstallSystemd(options(args)));
    return 0;
  }),
});

export default defineCommand({
  meta: { name: "systemd", description: "Install or remove the hardened systemd service" },
  subCommands: { install, uninstall },
});
