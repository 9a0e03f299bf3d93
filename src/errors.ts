/**
 * Error types that cross stage boundaries.
 *
 * CliError: a user-facing failure of a command (bad flag, unreadable file). main.ts prints
 * its message as one line on stderr and exits with its code; no stack trace unless
 * LOG_LEVEL=debug.
 *
 * SmtpError: the one error type for SMTP outcomes (maddy-style). `publicText` is what the
 * client sees and is deliberately generic; `cause` holds the detail for the log. Anything
 * thrown inside a session that is not an SmtpError becomes a temporary 451 4.3.0, never 250.
 */

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = 1,
  ) {
    super(message);
    this.name = "CliError";
  }
}

export class SmtpError extends Error {
  constructor(
    readonly code: number,
    readonly enhanced: string,
    readonly publicText: string,
    readonly detail?: unknown,
  ) {
    super(`${enhanced} ${publicText}`);
    this.name = "SmtpError";
  }

  /** Already logged with its detail where it happened: the SMTP layer does not log it again. */
  logged = false;

  get temporary(): boolean {
    return this.code >= 400 && this.code < 500;
  }

  /** Wrap any failure so it can only ever become a temporary reply. */
  static temporary(detail: unknown): SmtpError {
    if (detail instanceof SmtpError) return detail;
    return new SmtpError(451, "4.3.0", "Temporary local problem, please try again later", detail);
  }

  /** `temporary`, for a failure the caller has just logged with its detail. */
  static temporaryLogged(detail: unknown): SmtpError {
    const err = SmtpError.temporary(detail);
    err.logged = true;
    return err;
  }
}

/** SmtpError detail of a message a rule rejected (recorded under `id`): for the session line. */
export class RejectedMessage {
  constructor(
    readonly id: string,
    readonly rule: string | null,
    readonly category: string | null,
    /** Its row (and counters) committed: a failed write is logged, the 550 stands. */
    readonly recorded: boolean,
    /** `spf=… dkim=… dmarc=…` when the checks ran (see ReceiveOutcome). */
    readonly auth?: string,
  ) {}
}

/** One-line description of an unknown thrown value, for logs and CLI errors. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
