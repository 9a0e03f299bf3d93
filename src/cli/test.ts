/**
 * `mailgw test MESSAGE.eml|-` (SPEC §1): dry run. Parses the message with the same
 * extractFacts and classifies it with the same classify that `serve` uses, then prints the
 * decision and a per-rule trace (or JSON with --json). Never sends, writes or listens, so no
 * SPF/DKIM/DMARC DNS checks: their results are `none` unless given with --spf etc.
 * Exit codes: 0 decided, 1 rules invalid (lint errors printed), 2 message unreadable.
 */
import { defineCommand } from "citty";
import { readFile } from "node:fs/promises";
import { resolveRawValues } from "../config/config.ts";
import { CliError, describeError } from "../errors.ts";
import { isIP } from "node:net";
import { hostname } from "node:os";
import { applyHeaderDefaults, flagEnvelope, headerRecipients, headerSender, renderJson, renderText, type EnvelopeFlags, type EnvelopeSource, type RefusedRecipient } from "../parse/dry-run.ts";
import { AUTH_RESULTS, isAuthResult, type AuthResults } from "../parse/authenticate.ts";
import { extractFacts } from "../parse/extract.ts";
import { MAX_HEADER_BLOCK_BYTES } from "../parse/limits.ts";
import { normalizeIp } from "../smtp/ip.ts";
import { MAX_RECEIVED_HEADERS, oversizeReplyText } from "../smtp/limits.ts";
import { FORWARD_LOOP_TEXT, forwardWouldLoop } from "../act/relay-hops.ts";
import { buildReceivedHeader, continuesReceived, countReceivedHeaders, FOLD_BREAK, LOOP_REPLY } from "../smtp/received-header.ts";
import { newMessageId } from "../spool/ids.ts";
import { heloName, parseEnvelopeAddress } from "../smtp/lenient-syntax.ts";
import { checkRecipient, oneEntryPerAddress } from "../smtp/recipient-policy.ts";
import { classify } from "../rules/classify.ts";
import { formatDiagnostics } from "../rules/format.ts";
import { loadRules } from "../rules/load.ts";
import { cliAction } from "./action.ts";
import { repeatedFlag } from "./argv.ts";

interface TestArgs {
  message?: string;
  from?: string;
  "client-ip": string;
  helo: string;
  tls: boolean;
  rules?: string;
  json: boolean;
  spf?: string;
  dkim?: string;
  dmarc?: string;
}

const AUTH_FIELDS = ["spf", "dkim", "dmarc"] as const;

/**
 * What serve's Received: line names for a TLS session (the usual TLS 1.3 result), and a queue id
 * of serve's shape (spool/ids.ts): the line then has serve's length, so `size` rules decide at
 * the same byte count in the dry run as in serve. The id is never used for anything else.
 */
const DRY_RUN_TLS = { version: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384" };

/** --spf/--dkim/--dmarc: the results `serve` would have found (a dry run does no DNS). */
function authFlags(args: TestArgs): Partial<AuthResults> {
  const out: Partial<AuthResults> = {};
  for (const field of AUTH_FIELDS) {
    const value = args[field];
    if (value === undefined) continue;
    if (!isAuthResult(value)) throw new CliError(`--${field} must be one of ${AUTH_RESULTS.join(", ")} (got ${JSON.stringify(value)})`);
    out[field] = value;
  }
  return out;
}

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from("\r\n");
const MBOX_SEPARATOR = Buffer.from("From ");

/**
 * The file as an SMTP client sends it, so that `size` (and the rest) decide as in serve: a file
 * saved with Unix line endings (no CR anywhere) goes over the wire with CRLF (sendmail, swaks and
 * nodemailer convert), and a leading mbox `From ` separator (a message saved from a mailbox file)
 * is not part of the message (sendmail and procmail drop it; as a header it would be malformed),
 * and a last line without a line break gets the CRLF every client ends the data with.
 * `notes` say what was changed, for the report.
 */
export function asSent(raw: Uint8Array): { bytes: Uint8Array; notes: string[] } {
  const notes: string[] = [];
  let bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  if (bytes.subarray(0, MBOX_SEPARATOR.length).equals(MBOX_SEPARATOR)) {
    const end = bytes.indexOf(LF);
    bytes = end < 0 ? Buffer.alloc(0) : bytes.subarray(end + 1);
    notes.push("the leading mbox 'From ' line was left out, as an SMTP client sends the message");
  }
  if (bytes.indexOf(CR) < 0 && bytes.indexOf(LF) >= 0) {
    bytes = Buffer.from(bytes.toString("latin1").replaceAll("\n", "\r\n"), "latin1");
    notes.push("LF line endings counted as CRLF, as an SMTP client sends them");
  }
  // Every client ends the data with CRLF before the final dot (RFC 5321 4.1.1.4): without it,
  // `size` was two bytes short of serve's.
  if (bytes.byteLength > 0 && bytes[bytes.byteLength - 1] !== LF && bytes[bytes.byteLength - 1] !== CR) {
    bytes = Buffer.concat([bytes, CRLF]);
    notes.push("no line break at the end: counted with the CRLF an SMTP client adds");
  }
  return { bytes, notes };
}

async function readMessage(source: string): Promise<Uint8Array> {
  const where = source === "-" ? "from stdin" : source;
  let raw: Uint8Array;
  try {
    raw = source === "-" ? new Uint8Array(await Bun.stdin.arrayBuffer()) : new Uint8Array(await readFile(source));
  } catch (err) {
    throw new CliError(`cannot read message ${where}: ${describeError(err)}`, 2);
  }
  // Nothing to decide on: usually a forgotten `< file` or an empty download, not a message.
  if (raw.byteLength === 0) throw new CliError(`cannot read message ${where}: it is empty (0 bytes)`, 2);
  return raw;
}

/**
 * serve's RCPT check on one dry-run recipient: smtp-server's syntax check first (501 before any
 * hook), then recipient-policy.ts. `address`: as serve stores it when accepted (`postmaster` →
 * `postmaster@<first domain>`, A-label domain), else as given.
 */
function rcptVerdict(address: string, domains: readonly string[]): { address: string; reply: string | null } {
  const parsed = parseEnvelopeAddress("RCPT TO", address);
  // smtp-server's own text, as serve sends it.
  if (parsed === false) return { address, reply: "501 5.1.3 Error: Bad recipient address syntax" };
  const verdict = checkRecipient(`TO:<${address}>`, parsed, domains);
  return verdict.ok ? { address: verdict.address, reply: null } : { address, reply: `${verdict.code} ${verdict.enhanced} ${verdict.text}` };
}

function asServeKeeps(address: string, domains: readonly string[]): string {
  return rcptVerdict(address, domains).address;
}

/** The RCPT check of `serve` on the dry run's recipients. */
function refusedRecipients(rcpt: readonly string[], domains: readonly string[]): RefusedRecipient[] {
  const refused: RefusedRecipient[] = [];
  for (const address of rcpt) {
    const { reply } = rcptVerdict(address, domains);
    if (reply !== null) refused.push({ address, reply });
  }
  return refused;
}

interface DryRunOptions {
  /** Resolved by the caller (flag > RULES_FILE > ./rules.yaml). */
  rulesPath: string;
  json: boolean;
  auth?: Partial<AuthResults>;
  /** SMTP_HOSTNAME: the `by` of the Received: line. */
  hostname?: string;
  /** MAX_MESSAGE_SIZE_MB in bytes, when it could be read: over it serve answers 552. */
  maxMessageBytes?: number | null;
}

/**
 * The dry run itself.
 * Like `serve`, the message is classified with mailgw's own `Received:` header on top (it
 * counts in `size` and in `header:received` conditions).
 */
export async function runDryRun(source: string, flags: EnvelopeFlags, opts: DryRunOptions): Promise<number> {
  const { rulesPath, json, auth = {}, hostname = "localhost", maxMessageBytes = null } = opts;
  const { bytes: raw, notes: inputNotes } = asSent(await readMessage(source));
  const loaded = await loadRules(rulesPath);
  if (!loaded.ok) {
    process.stderr.write(formatDiagnostics("text", loaded.diagnostics, 1));
    process.stderr.write(`mailgw: rules file ${rulesPath} cannot be used (see above); nothing was classified\n`);
    return 1;
  }
  const domains = loaded.rules.domains;
  let envelope = flagEnvelope(flags);
  // The addresses as the client sends them, before serve puts their domains in ASCII form.
  let sent = [flags.from ?? "", ...flags.to];
  const envelopeSource: EnvelopeSource = { mailFrom: flags.from === null ? "header" : "flag", rcpt: flags.to.length === 0 ? "header" : "flag", nulCut: false };
  if (flags.to.length === 0 || flags.from === null) {
    // The default recipients (header To) go into the Received: line's `for` as serve writes it
    // for its envelope, so `size` and `header:received` see the same line as in serve.
    const header = await extractFacts(raw, envelope, { auth, content: false });
    if (flags.to.length === 0) envelope = { ...envelope, rcptTo: headerRecipients(header.to) };
    sent = [flags.from ?? headerSender(header), ...(flags.to.length > 0 ? flags.to : headerRecipients(header.to))];
    envelopeSource.nulCut = (flags.from === null && header.from.includes("\0")) || (flags.to.length === 0 && header.to.some((a) => a.includes("\0")));
  }
  // One entry per address as serve keeps it (a repeat in the earlier one's place): with both
  // kept, the Received line lost its `for <…>` (serve writes it for one recipient), `size` was short.
  envelope = { ...envelope, rcptTo: oneEntryPerAddress(envelope.rcptTo.map((a) => asServeKeeps(a, domains))) };
  if (envelope.rcptTo.length === 0) {
    inputNotes.push("no recipient (no --to, none in the header To): serve takes no message without an accepted RCPT TO; give --to");
  }
  // serve classifies with the recipients it accepted: one refused at RCPT is in neither its
  // `rcpt` nor its Received line's `for`. With none accepted there is no message; all are kept.
  const refused = refusedRecipients(envelope.rcptTo, domains);
  const accepted = envelope.rcptTo.filter((a) => !refused.some((r) => r.address === a));
  if (accepted.length > 0) envelope = { ...envelope, rcptTo: accepted };
  const received = Buffer.from(
    buildReceivedHeader({
      helo: envelope.helo, clientIp: envelope.clientIp, hostname, protocol: `${receivedWith(sent)}${envelope.tls ? "S" : ""}`,
      tls: envelope.tls ? DRY_RUN_TLS : null, id: newMessageId(), recipients: envelope.rcptTo, date: new Date(),
    }),
  );
  const asReceived = Buffer.concat([received, ...(continuesReceived(raw[0]) ? [FOLD_BREAK] : []), raw]);
  const authGiven = AUTH_FIELDS.filter((f) => auth[f] !== undefined);
  const parsed = await extractFacts(asReceived, envelope, { auth });
  const defaulted = applyHeaderDefaults(parsed, flags);
  const facts = { ...defaulted, rcpt: [...envelope.rcptTo] };
  const result = classify(facts, loaded.rules);
  // serve's loop check (smtp/data-handler.ts) counts the client's Received: lines, not its own.
  const receivedHeaders = countReceivedHeaders(raw.subarray(0, MAX_HEADER_BLOCK_BYTES), MAX_RECEIVED_HEADERS);
  const loop = receivedHeaders > MAX_RECEIVED_HEADERS;
  const refusedMessage = maxMessageBytes !== null && raw.byteLength > maxMessageBytes
    ? `552 ${oversizeReplyText(maxMessageBytes)}`
    : loop ? `${LOOP_REPLY.code} ${LOOP_REPLY.text}` : null;
  // smtp-server's MAIL syntax check (501 before any hook); only a sender given with --from.
  const refusedSender = flags.from !== null && parseEnvelopeAddress("MAIL FROM", facts.mailFrom) === false ? "501 5.1.7 Error: Bad sender address syntax" : null;
  // After the rules: the pipeline refuses a forward its relay would refuse as a loop (act/relay-hops.ts).
  const refusedForward = refusedMessage === null && result.decision.action === "forward" && forwardWouldLoop(receivedHeaders) ? `554 5.4.6 ${FORWARD_LOOP_TEXT}` : null;
  const report = { source: source === "-" ? "(stdin)" : source, inputNotes, facts, rules: loaded.rules, result, authGiven, refusedRecipients: refused, refusedMessage, refusedSender, refusedForward, envelopeSource };
  process.stdout.write(json ? renderJson(report) : renderText(report));
  return 0;
}

export default defineCommand({
  meta: { name: "test", description: "Dry run: parse a message, evaluate the rules, print the decision and a per-rule trace" },
  args: {
    message: { type: "positional", required: false, valueHint: "MESSAGE.eml|-", description: "message file, or - for stdin" },
    from: { type: "string", valueHint: "ADDR", description: "envelope sender (MAIL FROM); default: header From" },
    to: { type: "string", valueHint: "ADDR", description: "envelope recipient (RCPT TO), repeatable; default: header To" },
    "client-ip": { type: "string", default: "127.0.0.1", valueHint: "IP", description: "client address the rules see" },
    helo: { type: "string", default: "localhost", valueHint: "NAME", description: "HELO/EHLO name the rules see" },
    tls: { type: "boolean", default: false, description: "pretend the session used STARTTLS" },
    rules: { type: "string", valueHint: "FILE", description: "rules file (default: RULES_FILE or ./rules.yaml)" },
    json: { type: "boolean", default: false, description: "machine-readable output" },
    spf: { type: "string", valueHint: "RESULT", description: "SPF result the rules see (a dry run does no DNS checks; default none)" },
    dkim: { type: "string", valueHint: "RESULT", description: "DKIM result the rules see (default none)" },
    dmarc: { type: "string", valueHint: "RESULT", description: "DMARC result the rules see (default none)" },
  },
  run: cliAction<TestArgs>(async (args, rawArgs) => {
    if (!args.message) throw new CliError("missing MESSAGE: give a file name, or - to read stdin (mailgw test --help)");
    const auth = authFlags(args);
    const raw = resolveRawValues({ flags: { RULES_FILE: args.rules } });
    const rulesPath = raw.get("RULES_FILE") ?? "./rules.yaml";
    const to = repeatedFlag(rawArgs, ["to"]);
    if (isIP(args["client-ip"]) === 0) throw new CliError(`--client-ip must be an IPv4 or IPv6 address (got ${JSON.stringify(args["client-ip"])})`);
    // isIP takes a zone id (fe80::1%eth0), which serve's client addresses never carry: the dry
    // run matched `equals fe80::1` differently from serve and wrote the zone into Received.
    const zone = args["client-ip"].indexOf("%");
    if (zone !== -1) throw new CliError(`--client-ip ${args["client-ip"]} has an interface (zone id): serve sees the address without it; give ${args["client-ip"].slice(0, zone)}`);
    // In serve's form (smtp/ip.ts): an IPv4-mapped address is the IPv4 one, IPv6 compressed lower-case.
    const clientIp = normalizeIp(args["client-ip"]);
    // Lower-cased as serve's smtp-server gives it (EHLO [IPv6:::1] is helo=[ipv6:::1] there): a
    // case-sensitive helo regex decided otherwise in the dry run, and its Received differed.
    // Its first word only, as serve takes `HELO office scanner` (lenient-syntax.ts): a rule for
    // helo `office` matched in serve and not in the dry run.
    const flags: EnvelopeFlags = { from: args.from ?? null, to, clientIp, helo: heloName(args.helo).toLowerCase(), tls: args.tls };
    // Only to say that serve would refuse it: a bad value is serve's to report, not the dry run's.
    const maxMb = Number(raw.get("MAX_MESSAGE_SIZE_MB"));
    const maxMessageBytes = Number.isFinite(maxMb) && maxMb > 0 ? Math.floor(maxMb * 1024 * 1024) : null;
    return runDryRun(args.message, flags, { rulesPath, json: args.json, auth, hostname: raw.get("SMTP_HOSTNAME") || hostname(), maxMessageBytes });
  }),
});

/**
 * serve's Received `with` type for the envelope addresses as sent: a client must declare SMTPUTF8
 * for a UTF-8 address, its domain too (else 553), and serve then writes UTF8SMTP (RFC 6531):
 * `size` counts the same bytes. (serve's stored form of a UTF-8 domain is ASCII: not asked here.)
 */
function receivedWith(addresses: readonly string[]): "UTF8SMTP" | "ESMTP" {
  const nonAscii = /[^\x00-\x7f]/;
  return addresses.some((a) => nonAscii.test(a)) ? "UTF8SMTP" : "ESMTP";
}
