/**
 * `mailgw serve`: the gateway in one process (SPEC §1). Flags map to configuration variables
 * (flags > environment > .env > defaults); everything else lives in src/serve/.
 * Exit 0 after a clean stop (SIGTERM/SIGINT), 1 on bad configuration (one line naming the
 * variable or file), when another serve holds DATA_DIR (serve/data-dir-lock.ts), when a port
 * cannot be bound, under an open-file limit too low to run (smtp/limits.ts), or on a crash (serve/crash.ts).
 */
import { defineCommand } from "citty";
import { bunDotenvWarning } from "../config/bun-dotenv.ts";
import { loadConfig, type LoadOptions } from "../config/config.ts";
import { createLogger, logSinkSurvivingClosedStdout, routeConsoleToLogger, stdoutIsJournal } from "../log/logger.ts";
import { exitOnUncaughtError } from "../serve/crash.ts";
import { startGateway } from "../serve/gateway.ts";
import { runUntilSignalled } from "../serve/signals.ts";
import { CliError } from "../errors.ts";
import { openFileLimit, tooFewOpenFiles } from "../smtp/limits.ts";
import { cliAction } from "./action.ts";
import { envFileArg, envFileOption } from "./env-file.ts";

/** If something still holds the event loop after a clean stop, exit anyway after this. */
const EXIT_FALLBACK_MS = 2000;

interface ServeArgs {
  port?: string;
  host?: string;
  "http-port"?: string;
  rules?: string;
  "data-dir"?: string;
  "env-file"?: string;
}

export default defineCommand({
  meta: { name: "serve", description: "Run the gateway: SMTP listener, classifier, delivery queue and stats HTTP server" },
  args: {
    port: { type: "string", description: "SMTP port (SMTP_PORT, default 2525)" },
    host: { type: "string", description: "SMTP listen address (SMTP_HOST, default 0.0.0.0)" },
    "http-port": { type: "string", description: "Stats/health HTTP port (HTTP_PORT, default 3000)" },
    rules: { type: "string", description: "Rules file (RULES_FILE, default ./rules.yaml)" },
    "data-dir": { type: "string", description: "Spool and archive directory (DATA_DIR, default ./data)" },
    ...envFileArg,
  },
  run: cliAction<ServeArgs>(async (args) => {
    const loadOptions: LoadOptions = {
      envFile: envFileOption(args["env-file"]),
      flags: { SMTP_PORT: args.port, SMTP_HOST: args.host, HTTP_PORT: args["http-port"], RULES_FILE: args.rules, DATA_DIR: args["data-dir"] },
      flagNames: { SMTP_PORT: "--port", SMTP_HOST: "--host", HTTP_PORT: "--http-port", RULES_FILE: "--rules", DATA_DIR: "--data-dir" },
    };
    const dotenv = bunDotenvWarning(Bun.main, process.execArgv, process.cwd());
    // A value Bun read from .env itself may be why the settings are refused (a cut at '#'): say so with the refusal.
    const config = withBunHint(() => loadConfig(loadOptions), dotenv);
    const fileShortage = tooFewOpenFiles(openFileLimit());
    if (fileShortage !== null) throw new CliError(fileShortage);
    // Mail and its metadata are not for other local users: the database, its WAL and the
    // archive's day directories were created 0644/0755 under the usual umask 022 (message files
    // are 0640 already). The systemd unit sets UMask=0027; this does the same when run by hand.
    // Only ever tightens: a stricter umask (077) is kept.
    process.umask(process.umask() | 0o027);
    const sink = logSinkSurvivingClosedStdout(
      (error) => logger.warn("log output on stdout failed: logging to stderr from now on", { error }),
      (dropped) => logger.warn("log lines dropped: the log reader was not keeping up", { dropped }),
    );
    const logger = createLogger({ level: config.log.level, format: config.log.format, write: sink, journalPriority: stdoutIsJournal(config.log.journalStream) });
    routeConsoleToLogger(logger);
    // From here on, a crash's reason is a line of this log (with its journal priority), not Bun's bare stderr.
    exitOnUncaughtError(logger);
    for (const warning of config.warnings) logger.warn(warning);
    if (dotenv !== null) logger.warn(dotenv);
    // Signal handlers go in before start-up begins (see serve/signals.ts).
    await runUntilSignalled(startGateway({ config, logger, reloadConfig: () => loadConfig(loadOptions) }), logger);
    setTimeout(() => process.exit(0), EXIT_FALLBACK_MS).unref();
    return 0;
  }),
});

function withBunHint<T>(load: () => T, dotenv: string | null): T {
  try {
    return load();
  } catch (err) {
    if (dotenv === null || !(err instanceof CliError)) throw err;
    throw new CliError(`${err.message} (${dotenv})`, err.exitCode);
  }
}
