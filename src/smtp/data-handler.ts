/**
 * DATA: the message smtp-server streams to us (dot-unstuffed, up to the final `CRLF.CRLF` —
 * bare-LF/bare-CR dots never end it, so smuggling payloads stay inside the one message) goes
 * AS IT ARRIVES to where the sink wants it: for the gateway's pipeline, straight into the
 * message's spool file (spool/incoming-file.ts; our `Received:` header, known at DATA start,
 * is written first); for any other sink, into memory. Then: size limit (552 5.3.4, nothing
 * kept), loop check (554 5.4.6), the hand-over to the MessageSink. The reply is
 * `250 2.0.0 Queued as <id>` only when the sink resolved (the message is durable).
 *
 * Trusts nothing in the bytes. Memory: a big message is never held here: the socket is paused
 * while the file writes lag (`write` returns false until `drained()`). Past the size limit
 * the file is removed and the rest is read and dropped. A client that goes away mid-DATA:
 * the file is removed. Failure: the file cannot be created or written → the rest is read
 * and dropped, 451 4.3.0; SmtpError from the sink → its code and public text; anything else →
 * 451 4.3.0 with a generic text (smtp-server sends err.message verbatim), detail to the log.
 */
import type { SMTPServerDataStream, SMTPServerOptions, SMTPServerSession } from "smtp-server";
import type { Config } from "../config/config.ts";
import { RejectedMessage, SmtpError, describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { MAX_HEADER_BLOCK_BYTES } from "../parse/limits.ts";
import { isOwningSink } from "../spool/incoming-file.ts";
import { MessageCollector, type IncomingMessage } from "../spool/message-bytes.ts";
import type { Envelope, MessageSink, ReceiveOutcome } from "../types.ts";
import { oversizeReplyText, type SmtpLimits } from "./limits.ts";
import { buildReceivedHeader, continuesReceived, countReceivedHeaders, FOLD_BREAK, LOOP_REPLY } from "./received-header.ts";
import { oneEntryPerAddress } from "./recipient-policy.ts";
import { flushLoggedMessages, noteDataCutShort, noteMessageEnd, type SessionState } from "./session-log.ts";
import { smtpFailure } from "./smtp-failure.ts";

export interface DataContext {
  sink: MessageSink;
  logger: Logger;
  hostname: string;
  maxMessageBytes: number;
  maxReceivedHeaders: number;
}

export interface DataReply {
  code: number;
  /** Starts with the enhanced status code. */
  text: string;
  outcome?: ReceiveOutcome;
}

/** Where the message goes while it arrives, and how it is handed to the sink at the end. */
interface Receiver {
  /** The id the message will be queued as, when known before DATA (the spool file's). */
  queueId: string | null;
  incoming: IncomingMessage;
  deliver(envelope: Envelope): Promise<ReceiveOutcome>;
}

async function openReceiver(sink: MessageSink): Promise<Receiver> {
  if (isOwningSink(sink)) {
    const file = await sink.openIncoming();
    return { queueId: file.id, incoming: file, deliver: (envelope) => sink.receiveOwned(file, envelope) };
  }
  const memory = new MessageCollector();
  return { queueId: null, incoming: memory, deliver: (envelope) => sink.receive(memory.take(), envelope) };
}

/** `separated`: FOLD_BREAK was written before the client's first byte. */
type Pumped = { kind: "ok"; size: number; separated: boolean } | { kind: "too-big"; size: number } | { kind: "aborted" };

/**
 * Feeds the DATA stream into `incoming` (null: storage unusable, bytes dropped), pausing the
 * stream while `incoming` lags. Past `maxBytes` the bytes are dropped and `onOversize` runs once.
 * A first byte that would continue our Received header gets FOLD_BREAK written before it.
 */
function pump(stream: SMTPServerDataStream, incoming: IncomingMessage | null, maxBytes: number, onOversize: () => void): Promise<Pumped> {
  return new Promise((resolve) => {
    let size = 0;
    let separated = false;
    let over = false;
    let done = false;
    const finish = (result: Pumped): void => {
      if (done) return;
      done = true;
      resolve(result);
    };
    if (stream.destroyed) return finish({ kind: "aborted" });
    stream.on("data", (chunk: Buffer) => {
      if (size === 0 && continuesReceived(chunk[0])) {
        separated = true;
        incoming?.write(FOLD_BREAK);
      }
      size += chunk.length;
      if (over) return;
      if (size > maxBytes) {
        over = true;
        onOversize();
        return;
      }
      if (incoming && !incoming.write(chunk)) {
        stream.pause();
        void incoming.drained().then(() => stream.resume());
      }
    });
    stream.once("end", () => finish(over || stream.sizeExceeded ? { kind: "too-big", size } : { kind: "ok", size, separated }));
    stream.once("error", () => finish({ kind: "aborted" }));
    stream.once("close", () => finish({ kind: "aborted" }));
  });
}

/**
 * smtp-server's onData: receives the message (receiveMessage) and answers with its reply.
 * While the handler has not settled the session is `receiving`: a session closed meanwhile
 * writes its log line only afterwards (session-end.ts onClose), with the outcome.
 */
export function createDataHandler(opts: {
  sink: MessageSink;
  logger: Logger;
  smtp: Pick<Config["smtp"], "hostname" | "maxMessageBytes">;
  limits: Pick<SmtpLimits, "maxReceivedHeaders">;
  stateOf(session: SMTPServerSession): SessionState;
}): NonNullable<SMTPServerOptions["onData"]> {
  const { smtp: cfg, limits, stateOf } = opts;
  return (stream: SMTPServerDataStream, session, callback) => {
    const state = stateOf(session);
    const ctx = { sink: opts.sink, logger: opts.logger, hostname: cfg.hostname, maxMessageBytes: cfg.maxMessageBytes, maxReceivedHeaders: limits.maxReceivedHeaders };
    state.receiving = true;
    const settled = (): void => {
      state.receiving = false;
      state.afterReceiving?.();
    };
    receiveMessage(stream, session, state, ctx).then(
      (reply) => {
        if (!reply) {
          noteDataCutShort(state);
          callback(smtpFailure(451, "4.4.2 Connection lost during DATA"));
        }
        else {
          noteMessageEnd(state, reply.code, reply.text);
          flushLoggedMessages(opts.logger, state);
          if (reply.code === 250) callback(null, reply.text);
          else callback(smtpFailure(reply.code, reply.text));
        }
        settled();
      },
      (err: unknown) => {
        opts.logger.error("DATA handler failed", { session: session.id, error: describeError(err) });
        callback(smtpFailure(451, "4.3.0 Temporary local problem, please try again later"));
        settled();
      },
    );
  };
}

/** Receives one message; resolves with the reply to send, or null when the client went away. */
export async function receiveMessage(
  stream: SMTPServerDataStream,
  session: SMTPServerSession,
  state: SessionState,
  ctx: DataContext,
): Promise<DataReply | null> {
  // Listened to at once: a client gone while the file is being created must not be missed.
  let gone = stream.destroyed;
  const markGone = (): void => void (gone = true);
  stream.once("close", markGone);
  stream.once("error", markGone);
  const envelope = envelopeOf(session, state);
  let receiver: Receiver | null = null;
  let storageError: unknown = null;
  try {
    receiver = await openReceiver(ctx.sink);
  } catch (err) {
    storageError = err;
  }
  // As Postfix does, the header's `id` is the one the 250 reply and the log give (Queued as).
  const header = Buffer.from(
    buildReceivedHeader({
      helo: envelope.helo,
      clientIp: envelope.clientIp,
      hostname: ctx.hostname,
      protocol: withProtocol(session),
      tls: tlsInfo(session, state),
      id: receiver?.queueId ?? `${session.id}.${session.transaction}`,
      recipients: envelope.rcptTo,
      date: new Date(),
    }),
  );
  try {
    receiver?.incoming.write(header);
  } catch (err) {
    storageError = err;
  }
  const incoming = receiver?.incoming ?? null;
  const pumped = gone ? ({ kind: "aborted" } as const) : await pump(stream, incoming, ctx.maxMessageBytes, () => void incoming?.abort());
  if (pumped.kind === "aborted") {
    await incoming?.abort();
    return null;
  }
  state.size = pumped.size;
  // The session line describes this message from now on, not an earlier one's decision.
  state.lastMessage = { from: envelope.mailFrom, recipients: [...envelope.rcptTo] };
  state.decision = state.category = state.rule = state.messageId = state.auth = null;
  if (pumped.kind === "too-big") {
    await incoming?.abort();
    return { code: 552, text: oversizeReplyText(ctx.maxMessageBytes) };
  }
  if (receiver === null) return storageFailed(storageError, state, ctx);
  // The whole message is here (deadlines wait for us now, see connection.ts).
  state.storing = true;
  try {
    return await finishMessage(receiver, header.length + (pumped.separated ? FOLD_BREAK.length : 0), envelope, state, ctx);
  } finally {
    state.storing = false;
  }
}

/** After the final dot: the last writes, the loop check, the hand-over. `headerBytes`: the bytes before the client's. */
async function finishMessage(receiver: Receiver, headerBytes: number, envelope: Envelope, state: SessionState, ctx: DataContext): Promise<DataReply> {
  try {
    await receiver.incoming.end();
  } catch (err) {
    await receiver.incoming.abort();
    return storageFailed(err, state, ctx);
  }
  // The loop check reads the client's header section only (not our own Received: line).
  const clientPart = receiver.incoming.headerSection(headerBytes + MAX_HEADER_BLOCK_BYTES).subarray(headerBytes);
  const receivedHeaders = countReceivedHeaders(clientPart, ctx.maxReceivedHeaders);
  if (receivedHeaders > ctx.maxReceivedHeaders) {
    await receiver.incoming.abort();
    return { ...LOOP_REPLY };
  }
  // The pipeline refuses a forward its relay would refuse as a loop (act/relay-hops.ts).
  envelope.receivedHeaders = receivedHeaders;
  return store(receiver, envelope, state, ctx);
}

function storageFailed(err: unknown, state: SessionState, ctx: DataContext): DataReply {
  const smtpError = err instanceof SmtpError ? err : SmtpError.temporary(err);
  if (!smtpError.logged) ctx.logger.error("message not accepted", { session: state.id, client: state.client, error: describeError(smtpError.detail ?? err) });
  return { code: smtpError.code, text: `${smtpError.enhanced} ${smtpError.publicText}` };
}

async function store(receiver: Receiver, envelope: Envelope, state: SessionState, ctx: DataContext): Promise<DataReply> {
  try {
    const outcome = await receiver.deliver(envelope);
    if (envelope.firstInSession) state.countedWithMessage = true;
    state.decision = outcome.decision.action;
    state.category = outcome.decision.category;
    state.rule = outcome.decision.rule;
    state.auth = outcome.auth ?? null;
    state.messageId = outcome.id;
    state.ids.push(outcome.id);
    return { code: 250, text: `2.0.0 Queued as ${outcome.id}`, outcome };
  } catch (err) {
    const smtpError = err instanceof SmtpError ? err : SmtpError.temporary(err);
    if (smtpError.code >= 500) state.decision = "reject";
    if (smtpError.detail instanceof RejectedMessage) {
      if (envelope.firstInSession && smtpError.detail.recorded) state.countedWithMessage = true;
      state.messageId = smtpError.detail.id;
      state.rule = smtpError.detail.rule;
      state.category = smtpError.detail.category;
      state.auth = smtpError.detail.auth ?? null;
    }
    // The pipeline logs its own failures with the message id; the session line has the reply.
    if (smtpError.temporary && !smtpError.logged) {
      ctx.logger.error("message not accepted", { session: state.id, client: state.client, error: describeError(smtpError.detail ?? err) });
    }
    return { code: smtpError.code, text: `${smtpError.enhanced} ${smtpError.publicText}` };
  }
}

function envelopeOf(session: SMTPServerSession, state: SessionState): Envelope {
  const mailFrom = session.envelope.mailFrom;
  return {
    mailFrom: mailFrom ? mailFrom.address : "",
    // smtp-server's own check for a repeat saw the address before onRcptTo rewrote it.
    rcptTo: oneEntryPerAddress(session.envelope.rcptTo.map((r) => r.address)),
    clientIp: state.client,
    helo: session.hostNameAppearsAs || "",
    tls: Boolean(session.secure),
    firstInSession: !state.countedWithMessage,
    // Counted once the header is in (finishMessage); set here so the object keeps one shape.
    receivedHeaders: 0,
  };
}

/**
 * The Received header's `with` type: smtp-server's SMTP / ESMTP / ESMTPS, or, for a transaction
 * that declared SMTPUTF8, RFC 6531's UTF8SMTP / UTF8SMTPS (so a reader of the trace can tell
 * the message may carry UTF-8 addresses and headers). A HELO session is `SMTP` under TLS too:
 * smtp-server wrote `SMTPS`, which is no registered transmission type (RFC 3848 defines the S
 * and A suffixes for ESMTP and LMTP only), and Postfix writes `with SMTP` there; the comment
 * after it still names the TLS version and cipher.
 */
function withProtocol(session: SMTPServerSession): string {
  const base = session.transmissionType || "ESMTP";
  if (!base.startsWith("ESMTP")) return "SMTP";
  const args = session.envelope.mailFrom ? (session.envelope.mailFrom.args as Record<string, unknown> | false) : false;
  if (!args || !args.SMTPUTF8) return base;
  return `UTF8SMTP${base.slice("ESMTP".length)}`;
}

/** The protocol and cipher the handshake negotiated (noteTlsEstablished), for the Received header. */
function tlsInfo(session: SMTPServerSession, state: SessionState): { version: string; cipher: string } | null {
  if (!session.secure) return null;
  return { version: state.tlsVersion ?? "TLS", cipher: state.tlsCipher ?? (session.tlsOptions ? session.tlsOptions.name : "unknown") };
}
