/**
 * Parsers for one configuration value each (SPEC §2): a CliError names the variable, what was
 * wrong and what is accepted. `get` reads the value after precedence (config.ts).
 */
import { isIP } from "node:net";
import { CliError } from "../errors.ts";

export function nonEmpty(get: (n: string) => string, name: string): string {
  const v = get(name);
  if (!v) throw new CliError(`${name} is empty`);
  return v;
}

/** Letters, digits, `-` and `_` in dot-separated labels (`_` is seen in real host names). */
const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i;

/** A name for the banner, EHLO and Received: a space or a bracket there breaks the protocol line. */
export function hostName(get: (n: string) => string, name: string): string {
  const v = nonEmpty(get, name);
  if (!HOST_NAME.test(v)) throw new CliError(`${name}=${v} is not a host name (letters, digits, '-' and '_' in dot-separated labels, e.g. mx.example.com)`);
  return v;
}

/**
 * A listen address: an IP, or a name such as localhost. Checked here because a bad one fails
 * late and obscurely at bind time (Bun answered HTTP_HOST=999.1.1.1 with EEXIST).
 * `localhost` is 127.0.0.1: Bun binds a name to its first address only, ::1 where /etc/hosts
 * lists it first (Debian), so nginx's `proxy_pass 127.0.0.1:2525` or `curl 127.0.0.1:3000`
 * were refused while the address an admin meant is the IPv4 loopback (the HTTP default).
 */
export function listenHost(get: (n: string) => string, name: string): string {
  const v = nonEmpty(get, name);
  if (v.toLowerCase() === "localhost") return "127.0.0.1";
  const bare = v.replace(/^\[(.*)\]$/, "$1");
  if (isIP(bare) !== 0) return bare;
  if (!/^[\d.]+$/.test(v) && HOST_NAME.test(v)) return v;
  throw new CliError(`${name}=${v} is not an IP address or host name (e.g. 0.0.0.0, ::, 127.0.0.1, localhost)`);
}

/**
 * RELAY_SMTP_HOST: a host name or IP address ("" = no relay). Checked at start because a bad
 * one only showed at delivery time, every forward retried until QUEUE_MAX_AGE_HOURS; the usual
 * slips (`smtp.example.com:587`, `smtp://…`) get their fix named.
 */
export function relayHost(v: string, port: number): string {
  if (!v) return "";
  const bare = v.replace(/^\[(.*)\]$/, "$1");
  if (isIP(bare) !== 0) return bare;
  const shown = withoutLogin(v);
  const login = shown === v ? "" : ", the login in RELAY_SMTP_USER and RELAY_SMTP_PASS";
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) {
    throw new CliError(`RELAY_SMTP_HOST=${shown} is a URL: give the host name only (e.g. smtp.mailgun.org), the port in RELAY_SMTP_PORT and TLS in RELAY_SMTP_SECURE${login}`);
  }
  if (login) throw new CliError(`RELAY_SMTP_HOST=${shown} has a login in it: give the host name only (e.g. smtp.mailgun.org)${login}`);
  // [2001:db8::5]:587 is how an IPv6 address is written with a port (and how the log writes the relay).
  const withPort = /^([^:\s]+):(\d+)$/.exec(v) ?? /^\[([^\]\s]+)\]:(\d+)$/.exec(v);
  if (withPort) {
    throw new CliError(`RELAY_SMTP_HOST=${v} has a port in it: set RELAY_SMTP_HOST=${withPort[1]} and RELAY_SMTP_PORT=${withPort[2]} (now ${port})`);
  }
  if (!/^[\d.]+$/.test(v) && HOST_NAME.test(v)) return v;
  throw new CliError(`RELAY_SMTP_HOST=${v} is not a host name or IP address (e.g. smtp.mailgun.org, 10.0.0.5)`);
}

/**
 * The value with a `user:password@` written into it (an SMTP URL as other tools take it) cut
 * to `…@`: the error goes to stderr and the journal (at a reload, to the log), where the relay
 * password must never be (SPEC §2), nor a database's (DATABASE_URL=postgres://user:pw@…). Up to
 * the last `@`, as a password may hold one.
 */
export function withoutLogin(v: string): string {
  return v.replace(/^([a-z][a-z0-9+.-]*:\/\/)?.*@/i, "$1…@");
}

export function bool(get: (n: string) => string, name: string): boolean {
  const v = get(name).toLowerCase();
  if (["true", "1", "yes", "on"].includes(v)) return true;
  if (["false", "0", "no", "off", ""].includes(v)) return false;
  throw new CliError(`${name}=${get(name)} is not a boolean: use true or false (yes/no, on/off and 1/0 are taken too)`);
}

/**
 * Decimal only: Number() also reads `0x10`, `0b11`, `0o7` and `1e3`, so MAX_MESSAGE_SIZE_MB=0x10
 * started serve with 16 MB where an admin (or a template's placeholder) meant something else.
 */
const DECIMAL = /^-?(?:\d+(?:\.\d*)?|\.\d+)$/;

export function number(get: (n: string) => string, name: string, min: number, max: number): number {
  const v = get(name);
  const n = Number(v);
  if (!DECIMAL.test(v) || !Number.isFinite(n) || n < min || n > max) {
    throw new CliError(`${name}=${v} is not a number between ${min} and ${max}`);
  }
  return n;
}

export function integer(get: (n: string) => string, name: string, min: number, max: number): number {
  const v = get(name);
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new CliError(`${name}=${v} is not an integer between ${min} and ${max}`);
  }
  return Number(v);
}

export function oneOf<const T extends readonly string[]>(get: (n: string) => string, name: string, allowed: T): T[number] {
  const v = get(name).toLowerCase();
  if (!(allowed as readonly string[]).includes(v)) {
    throw new CliError(`${name}=${get(name)} is not one of: ${allowed.join(", ")}`);
  }
  return v as T[number];
}

/**
 * Whether two listen addresses can take the same port: the same address, or a wildcard that
 * covers the other (`::` takes IPv4 as well; `0.0.0.0` every IPv4 address). Each is first read
 * as a listener is bound (see listenAddress); a host name is compared as written.
 */
export function listenAddressesOverlap(a: string, b: string): boolean {
  const [x, y] = [listenAddress(a), listenAddress(b)];
  if (x === y || x === "::" || y === "::") return true;
  const v4 = (h: string) => isIP(h) === 4;
  return (x === "0.0.0.0" && v4(y)) || (y === "0.0.0.0" && v4(x));
}

/**
 * One spelling per listener: brackets dropped, `localhost` as listenHost reads it, an IPv6 address
 * in its short form (`::0` is `::`), an IPv4-mapped one as its IPv4 address (the kernel gives both
 * one port space). systemd install compares the env file's text, which listenHost never saw.
 */
function listenAddress(host: string): string {
  const bare = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (bare === "localhost") return "127.0.0.1";
  if (isIP(bare) !== 6) return bare;
  const short = new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(short);
  if (mapped === null) return short;
  const [hi, lo] = [parseInt(mapped[1] ?? "0", 16), parseInt(mapped[2] ?? "0", 16)];
  return [hi >> 8, hi & 0xff, lo >> 8, lo & 0xff].join(".");
}
