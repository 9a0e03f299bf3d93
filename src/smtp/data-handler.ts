/**
 * DATA: collects the message smtp-server streams to us (dot-unstuffed, up to the final
 * `CRLF.CRLF` — bare-LF/bare-CR dots never end it, so smuggling payloads stay inside the one
 * message), then: size limit (552 5.3.4, nothing stored), loop check (554 5.4.6), our
 * `Received:` header, and the hand-over to the MessageSink. The reply is `250 2.0.0 Queued as
 * <id>` only when the sink resolved (the message is durable).
 *
 * Trusts nothing in the bytes. Memory: chunks are kept only while the total is under the size
 * limit; past it the rest is read and dropped. A big message is never joined here: the
 * header and the chunks go to the sink as parts (it spools them with writev, and joins them
 * once only if its rules read the body); a small one is joined into one allocation.
 * Failure: SmtpError from the sink → its code and public text; anything else → 451 4.3.0
 * with a generic text (smtp-server sends err.message verbatim), the detail goes to the log.
 */
import type { SMTPServerDataStream, SMTPServerSession } from "smtp-server";
import { SmtpError, describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { MAX_HEADER_BLOCK_BYTES } from "../parse/limits.ts";
import { isOwningSink, joinParts, prefixOf, type MessageBytes } from "../spool/message-bytes.ts";
import type { Envelope, MessageSink, ReceiveOutcome } from "../types.ts";
import { buildReceivedHeader, countReceivedHeaders } from "./received-header.ts";
import type { SessionState } from "./session-log.ts";

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

/**
 * Messages up to this size are joined into one buffer right away (cheaper to handle than
 * parts); bigger ones stay in the chunks they arrived in, so they are never held twice.
 */
const JOIN_BELOW_BYTES = 256 * 1024;

type Collected = { kind: "ok"; chunks: Buffer[]; size: number } | { kind: "too-big"; size: number } | { kind: "aborted" };

function collect(stream: SMTPServerDataStream, maxBytes: number): Promise<Collected> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    stream.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (over || size > maxBytes) {
        over = true;
        chunks.length = 0;
        return;
      }
      chunks.push(chunk);
    });
    stream.once("end", () => resolve(over || stream.sizeExceeded ? { kind: "too-big", size } : { kind: "ok", chunks, size }));
    stream.once("error", () => resolve({ kind: "aborted" }));
    stream.once("close", () => resolve({ kind: "aborted" }));
  });
}

export function toSmtpServerError(reply: DataReply): Error & { responseCode: number } {
  return Object.assign(new Error(reply.text), { responseCode: reply.code });
}

/** Receives one message; resolves with the reply to send, or null when the client went away. */
export async function receiveMessage(
  stream: SMTPServerDataStream,
  session: SMTPServerSession,
  state: SessionState,
  ctx: DataContext,
): Promise<DataReply | null> {
  const collected = await collect(stream, ctx.maxMessageBytes);
  if (collected.kind === "aborted") return null;
  state.size = collected.size;
  if (collected.kind === "too-big") {
    return { code: 552, text: `5.3.4 Message size exceeds fixed maximum message size ${ctx.maxMessageBytes}` };
  }
  const envelope = envelopeOf(session, state);
  const header = Buffer.from(
    buildReceivedHeader({
      helo: envelope.helo,
      clientIp: envelope.clientIp,
      hostname: ctx.hostname,
      protocol: session.transmissionType || "ESMTP",
      tls: tlsInfo(session),
      id: `${session.id}.${session.transaction}`,
      recipients: envelope.rcptTo,
      date: new Date(),
    }),
  );
  const chunks = collected.chunks;
  const message: MessageBytes = { parts: [header, ...chunks], size: header.length + collected.size };
  if (message.size <= JOIN_BELOW_BYTES) message.parts = [joinParts(message)];
  // The loop check reads the client's header section only (not our own Received: line).
  const clientPart = message.parts.length === 1
    ? (message.parts[0] ?? header).subarray(header.length)
    : prefixOf({ parts: chunks, size: collected.size }, MAX_HEADER_BLOCK_BYTES);
  chunks.length = 0;
  if (countReceivedHeaders(clientPart, ctx.maxReceivedHeaders) > ctx.maxReceivedHeaders) {
    return { code: 554, text: "5.4.6 Too many hops (Received headers), mail loop suspected" };
  }
  return store(message, envelope, state, ctx);
}

async function store(message: MessageBytes, envelope: Envelope, state: SessionState, ctx: DataContext): Promise<DataReply> {
  state.storing = true;
  try {
    const sink = ctx.sink;
    const outcome = await (isOwningSink(sink) ? sink.receiveOwned(message, envelope) : sink.receive(joinParts(message), envelope));
    state.decision = outcome.decision.action;
    state.category = outcome.decision.category;
    state.rule = outcome.decision.rule;
    state.ids.push(outcome.id);
    return { code: 250, text: `2.0.0 Queued as ${outcome.id}`, outcome };
  } catch (err) {
    const smtpError = err instanceof SmtpError ? err : SmtpError.temporary(err);
    if (smtpError.code >= 500) state.decision = "reject";
    if (smtpError.temporary) {
      ctx.logger.error("message not accepted", { session: state.id, client: state.client, error: describeError(smtpError.detail ?? err) });
    }
    return { code: smtpError.code, text: `${smtpError.enhanced} ${smtpError.publicText}` };
  } finally {
    state.storing = false;
  }
}

function envelopeOf(session: SMTPServerSession, state: SessionState): Envelope {
  const mailFrom = session.envelope.mailFrom;
  return {
    mailFrom: mailFrom ? mailFrom.address : "",
    rcptTo: session.envelope.rcptTo.map((r) => r.address),
    clientIp: state.client,
    helo: session.hostNameAppearsAs || "",
    tls: Boolean(session.secure),
  };
}

function tlsInfo(session: SMTPServerSession): { version: string; cipher: string } | null {
  const cipher = session.secure ? session.tlsOptions : null;
  if (!cipher || typeof cipher !== "object") return null;
  return { version: String(cipher.version ?? "TLS"), cipher: String(cipher.name ?? "unknown") };
}
