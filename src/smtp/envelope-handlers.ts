/**
 * MAIL FROM and RCPT TO: the gateway's envelope policy as smtp-server handlers. At MAIL: the
 * offered parameters only, SMTPUTF8 rules, STARTTLS when required, the per-client rate limit
 * (whose state lives here), and a declared SIZE= that does not fit on the disk now. At RCPT: the parameters, SMTPUTF8, and the domain and
 * routing-trick check (recipient-policy.ts). Senders and refused recipients are noted in the
 * session's state for its log line. Separate from server.ts: the policy of a command, apart
 * from how the listener is assembled; created once per server, run for every command.
 */
import type { SMTPServerAddress, SMTPServerOptions, SMTPServerSession } from "smtp-server";
import type { Config } from "../config/config.ts";
import { TLS_FIRST_TEXT } from "./connection.ts";
import { lastAddressCommand, lastRcptArgument } from "./session-records.ts";
import { clientKey } from "./ip.ts";
import { MAIL_PARAMETERS, RCPT_PARAMETERS, unsupportedParameter, utf8Refusal } from "./parameters.ts";
import { createRateLimiter } from "./rate-limiter.ts";
import { canonicalSender, checkRecipient } from "./recipient-policy.ts";
import { noteRefusedRecipient, noteSender, type SessionState } from "./session-log.ts";
import { smtpFailure } from "./smtp-failure.ts";

/** Postfix's reply (RFC 1870 §6.1, RFC 3463 X.3.1 "mail system full"): the sender tries again later. */
export const INSUFFICIENT_STORAGE_TEXT = "4.3.1 Insufficient system storage";

export interface EnvelopeHandlers {
  onMailFrom: NonNullable<SMTPServerOptions["onMailFrom"]>;
  onRcptTo: NonNullable<SMTPServerOptions["onRcptTo"]>;
  /** ConnectionHooks.onMailRefused: a MAIL FROM the library refused before onMailFrom ran. */
  noteRefusedSender(session: SMTPServerSession, address: string): void;
  /** ConnectionHooks.onRcptRefused: every refused RCPT TO, as the client wrote the address. */
  noteRefusedRecipient(session: SMTPServerSession, address: string, code: number): void;
}

export function createEnvelopeHandlers(opts: {
  smtp: Pick<Config["smtp"], "tls" | "rateLimit">;
  /** Client IPs (or IPv6 /64s) the rate limiter remembers at once (limits.ts). */
  rateLimitTrackedClients: number;
  /** The rate limiter's clock when a test sets one; otherwise its own monotonic clock. */
  now: (() => number) | undefined;
  /** The domains of the rules currently in force (changes on hot reload). */
  domains: () => readonly string[];
  stateOf(session: SMTPServerSession): SessionState;
  /** SmtpServerDeps.roomFor. */
  roomFor: ((bytes: number) => boolean | Promise<boolean>) | undefined;
}): EnvelopeHandlers {
  const { smtp: cfg, stateOf } = opts;
  // Its own (monotonic) clock unless a test sets one: the wall clock can be stepped back.
  const limiter = createRateLimiter({ ...cfg.rateLimit, maxTracked: opts.rateLimitTrackedClients, ...(opts.now ? { now: opts.now } : {}) });

  return {
    onMailFrom(address: SMTPServerAddress, session, callback) {
      const state = stateOf(session);
      state.helo = session.hostNameAppearsAs || "";
      state.tls = Boolean(session.secure);
      address.address = canonicalSender(address.address, lastAddressCommand(session)?.toString("utf8"));
      // Noted before any check: a sender refused here (an option, the rate limit, TLS required)
      // is what an admin searches the log for, as Postfix's `NOQUEUE: reject: MAIL … from=<…>`.
      noteSender(state, address.address);
      const unsupported = unsupportedParameter(address.args, MAIL_PARAMETERS, lastAddressCommand(session));
      if (unsupported !== null) return callback(smtpFailure(555, `5.5.4 Unsupported option: ${unsupported}`));
      const utf8 = utf8Refusal(lastAddressCommand(session), address.args !== false && address.args.SMTPUTF8 === true);
      if (utf8 !== null) return callback(smtpFailure(utf8.code, utf8.text));
      if (cfg.tls.required && !session.secure) {
        return callback(smtpFailure(530, TLS_FIRST_TEXT));
      }
      const accept = () => {
        if (!limiter.take(clientKey(state.client))) return callback(smtpFailure(451, "4.7.1 Too many messages from your address, try again later"));
        callback();
      };
      // Before the rate limit: a MAIL refused for the disk must not use up the sender's allowance.
      const room = fits(address.args, opts.roomFor);
      const answer = (ok: boolean) => (ok ? accept() : callback(smtpFailure(452, INSUFFICIENT_STORAGE_TEXT)));
      // A failed reading is unknown room, which counts as enough (the write itself still fails safely with 451).
      if (typeof room === "boolean") answer(room);
      else room.then(answer, () => answer(true));
    },
    onRcptTo(address: SMTPServerAddress, session, callback) {
      const unsupported = unsupportedParameter(address.args, RCPT_PARAMETERS, lastAddressCommand(session));
      if (unsupported !== null) return callback(smtpFailure(555, `5.5.4 Unsupported option: ${unsupported}`));
      const state = stateOf(session);
      const utf8 = utf8Refusal(lastAddressCommand(session), session.envelope.smtpUtf8 === true);
      // Refusals are noted for the log line by the connection (onRcptRefused), as the client wrote them.
      if (utf8 !== null) return callback(smtpFailure(utf8.code, utf8.text));
      const verdict = checkRecipient(lastRcptArgument(session), address.address, opts.domains());
      if (!verdict.ok) return callback(smtpFailure(verdict.code, `${verdict.enhanced} ${verdict.text}`));
      address.address = verdict.address;
      if (!state.recipients.includes(verdict.address)) state.recipients.push(verdict.address);
      callback();
    },
    noteRefusedSender: (session, address) => noteSender(stateOf(session), canonicalSender(address)),
    noteRefusedRecipient: (session, address, code) => noteRefusedRecipient(stateOf(session), address, code),
  };
}

/**
 * Whether the size a MAIL FROM declared (SIZE=, digits only: smtp-server refused anything else
 * with 501, and a size over MAX_MESSAGE_SIZE_MB with 552, before this runs) fits on the disk now.
 * No SIZE= always fits here: that message goes on to DATA and gets 451 4.3.0 if storing it fails.
 */
function fits(args: SMTPServerAddress["args"], roomFor: ((bytes: number) => boolean | Promise<boolean>) | undefined): boolean | Promise<boolean> {
  if (roomFor === undefined || args === false) return true;
  const declared = (args as Record<string, unknown>).SIZE;
  return typeof declared !== "string" || roomFor(Number(declared));
}
