/**
 * Notes written after a value in an env file that systemd or Docker read (SPEC §2).
 *
 * mailgw's own .env reader drops `KEY=value # note`, as dotenv and Bun do. systemd's
 * EnvironmentFile= and `docker run --env-file` have no such comments: only a line that starts
 * with `#` is one, and everything after the `=` is the value. The same /etc/mailgw/mailgw.env
 * that `serve --env-file` read as DATA_DIR=/var/lib/mailgw/data then reached the service as
 * `/var/lib/mailgw/data # spool`: a new, empty data dir was created beside the real one (and
 * `mailgw queue --env-file` looked at the other), a relay password with a note failed every
 * login, a webhook secret `KEY=   # optional` signed with "# optional".
 *
 * Trusts: nothing. Failure: a CliError naming the variable (never a secret's value).
 */
import { CliError } from "../errors.ts";
import { withoutLogin } from "./scalar-values.ts";
import { VARIABLES } from "./variables.ts";

/** A `#` at the start of the value or after a space: how a note is written. */
const NOTE = /(?:^|\s)#/;
/**
 * In a secret, `#` at its start counts as a note only before a space or alone (`# optional`):
 * `#abc` is the value systemd passes for `KEY=#abc`, `KEY='#abc'` and `KEY="#abc"` alike, so a
 * warning at every start for it could not be silenced, quoted or not. `s3cret # note` still is one.
 */
const SECRET_NOTE = /^#(?:\s|$)|\s#/;

const SECRETS: ReadonlySet<string> = new Set(VARIABLES.filter((v) => v.secret).map((v) => v.name));

const WHY = "systemd's EnvironmentFile and docker --env-file take everything after the = as the value (only a line that starts with # is a comment)";

/**
 * Refuses a non-secret variable from the process environment whose value carries a note; for
 * a secret, where a " #" may really belong to it, returns a warning instead (by name only).
 * `names`: the variables the caller reads; `fromEnvironment`: those whose value came from the
 * process environment (values from mailgw's own env-file reader have their notes removed).
 */
export function inlineCommentWarnings(names: Iterable<string>, raw: ReadonlyMap<string, string>, fromEnvironment: ReadonlySet<string>): string[] {
  const warnings: string[] = [];
  for (const name of names) {
    const value = raw.get(name) ?? "";
    if (!fromEnvironment.has(name) || !NOTE.test(value)) continue;
    if (SECRETS.has(name)) {
      if (!SECRET_NOTE.test(value)) continue;
      warnings.push(`${name} has a '#' after a space or at its start, kept as part of the value: ${WHY}; if it is a note, move it to a line of its own`);
      continue;
    }
    // A login written into a URL (RELAY_SMTP_HOST=smtp://user:pw@…) is not shown, as elsewhere.
    throw new CliError(`${name}=${withoutLogin(value)} has a note in its value: ${WHY}; move the note to a line of its own`);
  }
  return warnings;
}
