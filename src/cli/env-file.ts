/**
 * `--env-file FILE`, shared by the commands that read the gateway's settings (serve, queue,
 * healthcheck): an admin who runs `serve --env-file /etc/mailgw/mailgw.env` points the others
 * at the same file, instead of their falling back to ./.env and the defaults (./data, port 3000).
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { CliError } from "../errors.ts";

export const envFileArg = {
  "env-file": { type: "string", valueHint: "FILE", description: "Read variables from this file instead of ./.env" },
} as const;

/** The file to read, absolute; undefined = ./.env. A named file that does not exist is an error. */
export function envFileOption(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  const path = resolve(raw);
  if (!existsSync(path)) throw new CliError(`--env-file ${path} does not exist`);
  return path;
}
