/**
 * Webhook transport: POSTs the JSON payload (webhook-payload.ts) to a rule's `url`.
 * With WEBHOOK_SECRET: `X-Mailgw-Signature: sha256=<hex HMAC-SHA256 of the exact body>` and
 * `X-Mailgw-Timestamp: <unix seconds>` (the same value as the body's `timestamp`, so the
 * signed body pins it and a receiver can refuse stale replays).
 *
 * Trusts: the URL (validated by rules lint). Not the receiver: redirects are not followed
 * (a POST body must not wander to another host), and at most WEBHOOK_MAX_REPLY_BYTES of its
 * reply are read. Failure: never throws; 2xx → delivered, 408/429/5xx, network errors and
 * timeouts → temporary (a 408/429/5xx's Retry-After is heeded by the scheduler), any other
 * status (4xx, 3xx) → permanent. A 2xx whose reply breaks off
 * before those bytes (or its end) arrive is temporary: a handler that sends its status first and
 * then dies looks exactly like that, and a duplicate (same `id`) is recoverable, a loss is not.
 */
import { redactUrl, redactUrlsIn } from "./redact-url.ts";
import { createHmac } from "node:crypto";
import type { AttemptOutcome } from "../queue/retry.ts";
import { describeStatus, parseRetryAfter, replyLine, requestErrorHint } from "./webhook-advice.ts";
import { bodyStream, webhookBody } from "./webhook-body.ts";
import { buildWebhookPayload, type WebhookMessage } from "./webhook-payload.ts";

/** Reply bytes kept for the attempt record. Stops a receiver that streams forever from holding memory. */
export const WEBHOOK_MAX_REPLY_BYTES = 1024;

/** Messages from this size on have the parse's garbage collected before their body is built. */
const COLLECT_AFTER_PARSE_BYTES = 8 * 1024 * 1024;

export const SIGNATURE_HEADER = "X-Mailgw-Signature";
export const TIMESTAMP_HEADER = "X-Mailgw-Timestamp";

export interface WebhookPostInput {
  url: string;
  message: WebhookMessage;
  secret: string | null;
  /** Aborting (attempt timeout, shutdown) ends the request as a temporary failure. */
  signal: AbortSignal;
  /**
   * How long the post may make no progress: the receiver takes no bytes, no answer comes once
   * they are all sent, or its answer stops coming (each of its chunks is progress). `signal`'s
   * deadline allows for the upload of a large message (attempt-runner.ts attemptDeadlineMs); a
   * receiver that stalls gets only this, as a relay's socket idle timeout and its final reply's
   * wait. Without it, only `signal`.
   */
  idleTimeoutMs?: number;
  nowMs: number;
  userAgent: string;
}

/** `sha256=<hex>` for a body and secret. */
export function signWebhookBody(body: string | Uint8Array, secret: string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

export async function postWebhook(input: WebhookPostInput): Promise<AttemptOutcome> {
  const fields = await buildWebhookPayload(input.message, input.nowMs);
  // A part postal-mime decoded in full (text in another charset or in base64, an attachment it
  // could not be spared) leaves ~7× its size in garbage (line views, a Blob, its ArrayBuffer
  // copy): collected now, before the body (2.2× the message) is built on top of it.
  if (input.message.raw.byteLength >= COLLECT_AFTER_PARSE_BYTES) Bun.gc(true);
  // Encoded once, into one Buffer (webhook-body.ts): the bytes signed are the bytes sent, and
  // neither the HMAC nor fetch (handed slices of it) makes its own copy.
  const body = webhookBody(fields, input.message.raw);
  // The reply is read only for a line in the attempt record: asked for as it is, and not
  // decompressed. Bun asks for gzip/br/zstd by default, and a receiver whose 2xx claimed an
  // encoding its body did not have failed to decode: "the reply broke off", posted again.
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "content-length": String(body.byteLength),
    "user-agent": input.userAgent,
    "accept-encoding": "identity",
  };
  if (input.secret !== null) {
    headers[SIGNATURE_HEADER] = signWebhookBody(body, input.secret);
    headers[TIMESTAMP_HEADER] = String(fields.timestamp);
  }
  // A receiver that took a 25 MB post and never answered (or stopped reading it) held its slot,
  // and one of the large-message slots every forward shares, for the 800 s its upload was allowed.
  const idle = idleWatch(input.idleTimeoutMs);
  const signal = idle === null ? input.signal : AbortSignal.any([input.signal, idle.signal]);
  let res: Response;
  let replied: ReplySnippet;
  const startedMono = performance.now();
  try {
    res = await fetch(input.url, { method: "POST", body: bodyStream(body, idle?.progress), headers, redirect: "manual", signal, decompress: false });
    // The answer's headers and each of its chunks are progress too: counted from the last pull
    // alone, a 2xx whose reply was still coming was cut, taken as not received and posted again.
    idle?.progress();
    replied = await readReplySnippet(res, idle?.progress);
  } catch (err) {
    const text = errorText(err);
    if (signal.aborted) return { kind: "temporary", error: `timed out: ${text}` };
    const hint = requestErrorHint(text);
    return { kind: "temporary", error: `request failed: ${text}${hint ? ` (${hint})` : ""}` };
  } finally {
    idle?.stop();
  }
  const { snippet, broken } = replied;
  const status = describeStatus({ status: res.status, statusText: res.statusText, location: locationOf(res, input.url), bodyBytes: body.byteLength });
  const reply = `${status}${snippet}`;
  if (res.status >= 200 && res.status < 300) {
    if (broken === null) return { kind: "delivered", reply };
    const why = signal.aborted ? `timed out: ${broken}` : broken;
    return { kind: "temporary", error: `${reply} (the reply broke off, so the post is not taken as received: ${why})` };
  }
  if (res.status === 408 || res.status === 429 || res.status >= 500) {
    // A rate-limited or overloaded receiver's Retry-After sets the earliest next attempt.
    // An HTTP-date counts from now, the reply's time, not from the start of a post that may have taken minutes.
    const retryAfterMs = parseRetryAfter(res.headers.get("retry-after"), input.nowMs + (performance.now() - startedMono));
    if (retryAfterMs === null) return { kind: "temporary", error: reply };
    return { kind: "temporary", error: `${reply} (Retry-After: ${Math.round(retryAfterMs / 1000)} s)`, retryAfterMs };
  }
  return { kind: "permanent", error: reply };
}

/** Aborts its signal once `progress` has not been called for `ms` (one timer, re-armed when it fires early). */
function idleWatch(ms: number | undefined): { signal: AbortSignal; progress: () => void; stop: () => void } | null {
  if (ms === undefined) return null;
  const controller = new AbortController();
  let last = performance.now();
  const check = (): void => {
    const quiet = performance.now() - last;
    if (quiet >= ms) controller.abort(new Error(`no progress for ${Math.round(ms / 1000)} s`));
    else timer = setTimeout(check, ms - quiet);
  };
  let timer = setTimeout(check, ms);
  return { signal: controller.signal, progress: () => void (last = performance.now()), stop: () => clearTimeout(timer) };
}

interface ReplySnippet {
  /** First bytes of the reply body as one line, prefixed with ": ", or "" when empty. */
  snippet: string;
  /** Why the body ended before WEBHOOK_MAX_REPLY_BYTES or its end arrived, or null. */
  broken: string | null;
}

async function readReplySnippet(res: Response, onChunk?: () => void): Promise<ReplySnippet> {
  if (!res.body) return { snippet: "", broken: null };
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let broken: string | null = null;
  try {
    while (size < WEBHOOK_MAX_REPLY_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      onChunk?.();
      chunks.push(value);
      size += value.byteLength;
    }
  } catch (err) {
    broken = errorText(err);
  } finally {
    reader.cancel().catch(() => undefined);
  }
  const encoding = res.headers.get("content-encoding")?.trim().toLowerCase() ?? "identity";
  if (encoding !== "identity" && encoding !== "") return { snippet: size > 0 ? `: (a ${encoding}-encoded reply, not shown)` : "", broken };
  const text = Buffer.concat(chunks).subarray(0, WEBHOOK_MAX_REPLY_BYTES).toString("utf8");
  // A redirect's page names its target ("Redirecting to https://…/hook?token=…"), error pages
  // the URL asked for: shown as the rule's URL is, in queue list, on the stats page and in the log.
  const line = redactUrlsIn(replyLine(text, res.headers.get("content-type")));
  return { snippet: line ? `: ${line}` : "", broken };
}

/** A redirect's Location, resolved against the request URL, without query or credentials; null when absent. */
function locationOf(res: Response, url: string): string | null {
  const location = res.headers.get("location");
  if (location === null) return null;
  try {
    return redactUrl(new URL(location, url).href);
  } catch {
    return "(an invalid Location)";
  }
}

/**
 * An error's message for the attempt record: URLs in it redacted (Bun names the whole URL in some,
 * `Malformed_HTTP_Response fetching "https://…?token=…"`, and the record is shown in `queue list`,
 * on the stats page and in the log), and without Bun's advice to the programmer ("pass `verbose: true`").
 */
function errorText(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return redactUrlsIn(text.replace(/\s*For more information, pass `verbose: true`[^.]*\.?/, ""))
    .trim()
    .replace(/\.$/, "");
}
