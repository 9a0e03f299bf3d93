/**
 * Thin subclasses of smtp-server 3.21's SMTPServer / SMTPConnection for what the library has
 * no option for (read from node_modules/smtp-server/dist/esm/smtp-connection.js):
 *
 *  - Enhanced status codes chosen by us. The library maps a reply code to a fixed enhanced
 *    code (550 → 5.1.1, 552 → 5.2.2, 554 → 5.6.0, 451 → 4.3.0), and error callbacks cannot
 *    carry one. Here a reply text that already starts with an enhanced code (`5.7.1 ...`) is
 *    sent as is; every other reply keeps the library's mapping.
 *  - The raw RCPT argument, because the library silently strips source routes
 *    (`<@a:b@c>` → `b@c`) before onRcptTo sees the address.
 *  - Session and DATA deadlines (slow clients): the library only has an idle timeout, which
 *    any trickled byte resets.
 *  - Every reply observed, for the one-line session log, and the errors among them counted: a
 *    session that collects MAX_ERRORS_PER_SESSION of them without delivering mail is closed.
 *  - The DATA scanner (data-scanner.ts): the same end-of-DATA and dot-unstuffing decisions,
 *    found with the native indexOf instead of a JavaScript loop over every byte.
 *  - The parser's continue() made re-entrant (parser-patches.ts): commands pipelined after a
 *    message were lost when the same read held a second whole transaction.
 *  - Over-long command lines answered 500 with the session going on (parser-patches.ts).
 *  - Replies to a client that shut down its sending side (half-open listener, front.ts): still
 *    written, and the connection closed once none is owed (closeWhenAnswered).
 *  - A message body read as commands after a refused DATA: the session ends (body-as-commands.ts).
 *  - DATA that rests at a bare-LF dot line (`\n.\n`): a 421 that says so (bare-lf-end.ts).
 *  - A STARTTLS handshake the client never finishes: the session ends (and is logged) when the
 *    idle timeout closes it, which Bun's TLS socket does not report (upgrade, _onTimeout).
 *
 * Failure: a deadline answers 421 4.4.2 and closes the session; the library then aborts the
 * DATA stream so nothing half-received is stored.
 */
import { isUtf8 } from "node:buffer";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from "smtp-server";
import { SMTPConnection, type SMTPConnectionOptions } from "smtp-server/lib/smtp-connection.js";
import type { SMTPStream } from "smtp-server/lib/smtp-stream.js";
import { BARE_LF_END_REPLY, BareLfEndWatch } from "./bare-lf-end.ts";
import { BodyAsCommands } from "./body-as-commands.ts";
import { useFastDataScanner } from "./data-scanner.ts";
import { MAX_COMMAND_LINE_BYTES } from "./limits.ts";
import { answerLongLines, continueAfterData } from "./parser-patches.ts";
import { heloWithOneName, oneSpaceBetweenWords, parseWithQuotedSpaces, withoutTrailingCr } from "./lenient-syntax.ts";
import { clientKey } from "./ip.ts";
import { repliesAfterClientEnd } from "./half-open.ts";
import { markProxyOwnSession, noteAddressCommand, noteRcptArgument, rcptAddress } from "./session-records.ts";

/** Postfix's words for a line past its line_length_limit. */
const LINE_TOO_LONG_TEXT = "5.5.2 Error: line too long";

/** What the gateway layer wants to know about every connection. */
export interface ConnectionHooks {
  sessionTimeoutMs: number;
  dataTimeoutMs: number;
  /** limits.ts BARE_LF_END_WAIT_MS. */
  bareLfEndWaitMs: number;
  /** Error replies a session may collect without delivering mail (limits.ts MAX_ERRORS_PER_SESSION). */
  maxErrors: number;
  /** Called for every reply line written (code and text, enhanced code included). */
  onReply(session: SMTPServerSession, code: number, text: string): void;
  /** True while our onData handler holds a complete message (storing it): deadlines wait. */
  isStoring(session: SMTPServerSession): boolean;
  /**
   * A MAIL FROM the library refuses for its parameters before onMailFrom runs (a declared SIZE=
   * over the limit, a bad BODY=): the sender, for the session's log line.
   */
  onMailRefused(session: SMTPServerSession, address: string): void;
  /**
   * A RCPT TO refused (5xx), by the library (501 syntax, 555 parameters) or by our policy: the
   * address as the client wrote it, for the session's log line (Postfix logs every such reject).
   */
  onRcptRefused(session: SMTPServerSession, address: string, code: number): void;
  /** SMTP_TLS_REQUIRED: commands that need TLS get 530 until STARTTLS (refusedBeforeTls). */
  tlsRequired: boolean;
}

/**
 * With SMTP_TLS_REQUIRED, the commands answered 530 before STARTTLS. RFC 3207 §4 refuses all
 * but EHLO, STARTTLS, NOOP and QUIT; Postfix (smtpd_tls_security_level=encrypt) allows HELO
 * too, and leaves verbs it does not know to "command not recognized" (and the library answers
 * an HTTP request line 421). MAIL is left to onMailFrom, which answers the same 530 and notes
 * the sender for the session's log line.
 */
const NEEDS_TLS = new Set(["RCPT", "DATA", "RSET", "VRFY", "EXPN", "HELP", "ETRN", "BDAT"]);
/** The 530's text, for those commands here and for MAIL in onMailFrom (envelope-handlers.ts). */
export const TLS_FIRST_TEXT = "5.7.0 Must issue a STARTTLS command first";

const ENHANCED_PREFIX = /^[245]\.\d{1,3}\.\d{1,3} /;
/** How long a deadline that fell during storage is postponed before it is checked again. */
const DEADLINE_RECHECK_MS = 1000;
/** How often a client that stopped sending is checked for replies still owed to it. */
const ANSWER_RECHECK_MS = 50;

export class GatewaySmtpServer extends SMTPServer {
  /**
   * Set by the graceful stop (shutdown.ts) instead of the library's close(): that one answers
   * every further command of every session 421, so a transaction already under way (MAIL and
   * RCPT accepted) was cut at DATA. Draining, a transaction in progress goes on to its final
   * reply; a new MAIL gets 421 and the connection closes.
   */
  draining = false;

  constructor(
    options: SMTPServerOptions,
    readonly hooks: ConnectionHooks,
  ) {
    super(options);
  }

  /** Same as the library's connect(), with our connection class; `proxyOwn`: see session-records.ts isProxyOwnSession. */
  override connect(socket: Socket | TLSSocket, socketOptions?: SMTPConnectionOptions | null, proxyOwn = false): void {
    const connection = new GatewayConnection(this, socket, socketOptions);
    connection.clientKey = clientKey(connection.remoteAddress);
    if (proxyOwn) markProxyOwnSession(connection.session);
    this.connections.add(connection);
    connection.on("error", (err: Error) => this.emit("error", err));
    connection.on("connect", (info: unknown) => this.emit("connect", info));
    connection.init();
  }

  /**
   * Open sessions of a client key (ip.ts clientKey). Counted over `connections`, which the
   * library leaves when a session closes (also one still lingering half-closed), so the count
   * never drifts; at most MAX_CLIENTS string comparisons per accepted connection.
   */
  connectionsOf(key: string): number {
    let n = 0;
    for (const c of this.connections) if (c instanceof GatewayConnection && c.clientKey === key) n++;
    return n;
  }
}

export class GatewayConnection extends SMTPConnection {
  /** The client's key for per-client accounting (ip.ts clientKey), set by GatewaySmtpServer.connect. */
  clientKey = "";
  private sessionTimer: ReturnType<typeof setTimeout> | null = null;
  /** Error replies since the session started or last queued a message. */
  private errors = 0;
  private dataTimer: ReturnType<typeof setTimeout> | null = null;
  /** The RCPT argument whose reply is the next one sent (commands are answered in order). */
  private rcptAwaitingReply: string | null = null;
  private readonly bodyAsCommands = new BodyAsCommands();

  private get hooks(): ConnectionHooks {
    return (this._server as GatewaySmtpServer).hooks;
  }

  override init(): void {
    // The library fills the session in only once the greeting is sent; a connection closed
    // before that (a health check's reset) was logged without its client address.
    this.session.remoteAddress = this.remoteAddress;
    repliesAfterClientEnd(this._socket);
    this.sessionTimer = this.deadline(this.hooks.sessionTimeoutMs, "Session time limit exceeded");
    super.init();
  }

  /**
   * Every way a connection ends comes here, before and after STARTTLS. Not a 'close' listener
   * on the socket: upgrade() removes every listener from the plain socket, so for a TLS session
   * the session deadline stayed armed and held the whole connection (sockets, parser, closures)
   * in memory for SESSION_TIMEOUT_MS after it ended — found by bench/soak.ts.
   */
  override _onClose(): void {
    this.clearTimers();
    super._onClose();
  }

  /**
   * A handshake cut short from our side (the idle timeout, the shutdown's 421) ends with the plain
   * socket under the TLS socket that is still handshaking. Bun's TLS socket then emits no 'close',
   * and upgrade() removed the plain socket's own listener: the session never ended — no log line,
   * no session counted, and its state and timers kept for SESSION_TIMEOUT_MS. The plain socket's
   * close ends it while the handshake has not finished.
   */
  override upgrade(callback: () => void, secureCallback?: () => void): void {
    const plain = this._socket;
    super.upgrade(callback, secureCallback);
    plain.once("close", () => {
      if (this._upgrading && !this._closed) this._onClose();
    });
  }

  /** The idle timeout during a STARTTLS handshake: the session's log line says what failed. */
  override _onTimeout(): void {
    if (this._upgrading && !this._closing && !this._closed) {
      this._onError(Object.assign(new Error("timed out"), { meta: { stage: "connect" } }));
    }
    if (!this._closing && BareLfEndWatch.of(this._parser)?.atBareLfEnd()) return this.closeAtBareLfEnd();
    super._onTimeout();
  }

  /** The client rests at a bare-LF dot line, taking it for the end of DATA: 421 with the cause. */
  private closeAtBareLfEnd(): void {
    if (this._closing || this._closed || this.hooks.isStoring(this.session)) return;
    this.send(421, `4.4.2 ${this.name} ${BARE_LF_END_REPLY}`);
  }

  override _createParser(): SMTPStream {
    const longLine = (): void => this.send(500, LINE_TOO_LONG_TEXT);
    const parser = answerLongLines(continueAfterData(useFastDataScanner(super._createParser())), MAX_COMMAND_LINE_BYTES, longLine);
    // The socket ends the parser when the client has sent its last byte (the listener is
    // half-open, front.ts); by then every whole command before it has been answered.
    parser.once("finish", () => this.closeWhenAnswered());
    new BareLfEndWatch(parser, this.hooks.bareLfEndWaitMs, () => this.closeAtBareLfEnd());
    return parser;
  }

  /**
   * The client will send nothing more: close once no reply is owed. One may still be: the
   * command the parser flushed at the end (a last line without CRLF), or a message still being
   * stored; a message cut off mid-DATA is not waited for (the close aborts it).
   */
  private closeWhenAnswered(): void {
    if (this._closing || this._closed) return;
    const owed = this._handlerPending || this.hooks.isStoring(this.session) || (Boolean(this._dataStream) && this._parser !== false && !this._parser._dataMode);
    if (owed) {
      setTimeout(() => this.closeWhenAnswered(), ANSWER_RECHECK_MS).unref();
      return;
    }
    this.close();
  }

  /**
   * SMTP_TLS_REQUIRED before STARTTLS: RSET, VRFY, HELP, RCPT, DATA... get 530 (NEEDS_TLS; the
   * library answered VRFY 252 and HELP 214 in plain text). What the library refuses first (a
   * command during the handshake, before the greeting, while closing) keeps its answer.
   * First, the whitespace between the command's words is made one space and stray CRs at its
   * end are dropped (lenient-syntax.ts).
   */
  override _onCommand(raw: Buffer, callback?: () => void): void {
    const command = oneSpaceBetweenWords(withoutTrailingCr(raw));
    // Not while the library discards or refuses input itself (a handshake, before the greeting).
    const body = this._upgrading || !this._ready || this._nextHandler ? null : this.bodyAsCommands.refusal(command);
    if (body !== null) {
      this.send(421, body);
      return callback?.();
    }
    if (!this.refusedBeforeTls(command)) return super._onCommand(command, callback);
    this.send(530, TLS_FIRST_TEXT);
    this._whenWritable(callback ?? (() => false));
  }

  /** Quoted local parts with spaces, and `HELO host name`: see lenient-syntax.ts. */
  override _parseAddressCommand(name: string, command: Buffer | string): ReturnType<SMTPConnection["_parseAddressCommand"]> {
    return parseWithQuotedSpaces((n, c) => super._parseAddressCommand(n, c), name, command.toString());
  }

  override handler_HELO(command: Buffer, callback: () => void): void {
    super.handler_HELO(heloWithOneName(command), callback);
  }

  override handler_EHLO(command: Buffer, callback: () => void): void {
    super.handler_EHLO(heloWithOneName(command), callback);
  }

  private refusedBeforeTls(command: Buffer): boolean {
    if (!this.hooks.tlsRequired || this.secure || this._upgrading || !this._ready || this._nextHandler || this._server._closeTimeout) return false;
    const verb = command.toString("latin1", 0, Math.min(command.length, 16)).split(" ", 1)[0]?.toUpperCase() ?? "";
    return NEEDS_TLS.has(verb);
  }

  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    if (code === 421 && typeof data === "string") data = this.withOwnName(data);
    const own = typeof data === "string" && ENHANCED_PREFIX.test(data);
    const sentContext = own ? false : context;
    // What goes on the wire: the log's `reply` must show the enhanced code the client saw.
    const enhanced = this._getEnhancedStatusCode(code, sentContext);
    // As the library decides whether it writes (not during a TLS handshake, not on a closed
    // socket): a reply it drops is not the session's. The 451 answered to a DATA whose client
    // had gone, or that mailgw had just timed out with 421, was logged as the reply it got.
    const written = !this._upgrading && this._socket !== undefined && !this._socket.destroyed && this._socket.readyState === "open";
    super.send(code, data, sentContext);
    const rcpt = this.rcptAwaitingReply;
    this.rcptAwaitingReply = null;
    if (!written) return;
    const text = Array.isArray(data) ? (data[0] ?? "") : (data ?? "");
    const reply = enhanced ? `${enhanced} ${text}` : text;
    this.hooks.onReply(this.session, code, reply);
    // A refused recipient, whoever refused it; not a RCPT out of sequence (503) or before TLS (530).
    if (rcpt !== null && code >= 500 && code !== 503 && code !== 530) this.hooks.onRcptRefused(this.session, rcptAddress(rcpt), code);
    this.countError(code, reply);
  }

  /**
   * RFC 5321 §3.8/§4.2: a 421 starts with the server's name (`421 4.4.2 mx.example …`, as
   * Postfix's `421 4.4.2 mx.example Error: timeout exceeded`), so a client's log says which
   * host closed on it. Ours carry it; smtp-server's own did not (the idle timeout, too many
   * unrecognized commands, an HTTP request line, a parser error): the name is put in after
   * the enhanced code, if any.
   */
  private withOwnName(text: string): string {
    const enhanced = ENHANCED_PREFIX.exec(text)?.[0] ?? "";
    const rest = text.slice(enhanced.length);
    return rest.startsWith(`${this.name} `) ? text : `${enhanced}${this.name} ${rest}`;
  }

  /** As Postfix's smtpd_hard_error_limit: errors without mail delivered in between end the session. */
  private countError(code: number, reply: string): void {
    if (code === 250 && reply.startsWith("2.0.0 Queued")) this.errors = 0;
    if (code < 400 || code === 421 || reply.startsWith("4.5.3 ") || this._closing || this._closed) return;
    if (++this.errors >= this.hooks.maxErrors) this.send(421, `4.7.0 ${this.name} Error: too many errors, closing connection`);
  }

  override handler_MAIL(command: Buffer, callback: () => void): void {
    if ((this._server as GatewaySmtpServer).draining) {
      this.shutDown();
      callback();
      return;
    }
    noteAddressCommand(this.session, command);
    // smtp-server sets SMTPUTF8/BODY= on the envelope before onMailFrom and keeps them when it
    // refuses the MAIL (555, 553, 451): a next MAIL without SMTPUTF8 had UTF-8 RCPTs taken
    // (RFC 6531 §3.4). Not during a transaction: a nested MAIL (503) must leave it as it is.
    const envelope = this.session.envelope;
    if (envelope && !envelope.mailFrom) Object.assign(envelope, { smtpUtf8: false, bodyType: "7bit" });
    super.handler_MAIL(command, callback);
  }

  /**
   * REQUIRETLS is not offered (hideREQUIRETLS), so it is answered like any option not offered
   * (555 5.5.4, parameters.ts). The library checks it first and said 530 "not permitted on
   * non-TLS connections" before STARTTLS, as if it would be honoured after.
   */
  override _validateMailParams(parsed: Parameters<SMTPConnection["_validateMailParams"]>[0]): ReturnType<SMTPConnection["_validateMailParams"]> {
    const args = parsed.args || {};
    const refusal = Object.keys(args).some((k) => k.toUpperCase() === "REQUIRETLS")
      ? { code: 555, message: "5.5.4 Unsupported option: REQUIRETLS", enhancedCode: null }
      : super._validateMailParams(parsed);
    if (refusal) (this._server as GatewaySmtpServer).hooks.onMailRefused(this.session, parsed.address);
    return refusal;
  }

  override handler_RCPT(command: Buffer, callback: () => void): void {
    noteAddressCommand(this.session, command);
    // UTF-8 when it is (an SMTPUTF8 address, or one refused for lacking it): read as latin1, a
    // refused `josé@other.example` was logged as `josÃ©@other.example`, which no grep finds.
    // Other bytes stay latin1, one character per byte, as the client sent them.
    const argument = command.toString(isUtf8(command) ? "utf8" : "latin1").replace(/^\s*RCPT\s*/i, "");
    noteRcptArgument(this.session, argument);
    this.rcptAwaitingReply = argument;
    super.handler_RCPT(command, callback);
  }

  override handler_DATA(command: Buffer, answered: () => void): void {
    // Before the parser hands on the next line (synchronously, from `answered`): a refusal noted.
    const callback = (): void => {
      if (!this._dataStream) this.bodyAsCommands.dataRefused();
      answered();
    };
    // DATA takes no argument (RFC 5321 §4.1.1.4); smtp-server ignored one and answered 354.
    if (/^DATA\s*\S/i.test(command.toString("latin1"))) {
      this.send(501, "5.5.4 Syntax: DATA");
      callback();
      return;
    }
    // Before the library's handler: the data after the DATA line may be fed from within it.
    const bareLfEnd = BareLfEndWatch.of(this._parser);
    bareLfEnd?.start();
    super.handler_DATA(command, callback);
    const stream = this._dataStream;
    if (!stream) return;
    this.dataTimer = this.deadline(this.hooks.dataTimeoutMs, "DATA time limit exceeded");
    const stop = (): void => {
      if (this.dataTimer) clearTimeout(this.dataTimer);
      this.dataTimer = null;
      bareLfEnd?.stop();
    };
    stream.once("end", stop);
    stream.once("close", stop);
  }

  /** No transaction in progress: closing now loses nothing. */
  isIdle(): boolean {
    return !this.session.envelope?.mailFrom && !this._dataStream && !this.hooks.isStoring(this.session);
  }

  /** Our DATA handler is storing this session's message. */
  isStoring(): boolean {
    return this.hooks.isStoring(this.session);
  }

  /** Server shutdown: 421 and close (the client retries later, RFC 5321 §3.8). */
  shutDown(): void {
    if (!this._closing && !this._closed) this.send(421, `4.3.2 ${this.name} Service shutting down, try again later`);
  }

  /** The stop's last resort for a client that kept its side open after the 421 (shutdown.ts). */
  destroySocket(): void {
    this._socket.destroy();
  }

  /** Whether the session has ended (its socket closed: the library's close handler has run). */
  hasEnded(): boolean {
    return this._closed;
  }

  private deadline(ms: number, text: string): ReturnType<typeof setTimeout> {
    const fire = (): void => {
      if (this._closing || this._closed) return;
      if (this.hooks.isStoring(this.session)) {
        setTimeout(fire, DEADLINE_RECHECK_MS).unref();
        return;
      }
      this.send(421, `4.4.2 ${this.name} ${text}, closing connection`);
    };
    const timer = setTimeout(fire, ms);
    timer.unref();
    return timer;
  }

  private clearTimers(): void {
    if (this.sessionTimer) clearTimeout(this.sessionTimer);
    if (this.dataTimer) clearTimeout(this.dataTimer);
    this.sessionTimer = this.dataTimer = null;
  }
}
