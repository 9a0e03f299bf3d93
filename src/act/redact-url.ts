/**
 * A webhook URL as anyone but the rules file's owner sees it: in logs, attempt records, the
 * stats page and `mailgw queue list`. No credentials and no query string, which carry tokens; and
 * no path past its first segment, because Slack (`/services/T…/B…/<token>`), Discord
 * (`/api/webhooks/<id>/<token>`) and similar receivers carry their secret in the path: whoever
 * could read the stats page or the log could have posted as the gateway.
 *
 * A first segment that looks like a token (webhook.site/<uuid>, Make's hook.<zone>.make.com/<key>)
 * is the secret itself, so it goes too.
 *
 * Failure: a string that is no URL is shown as "(invalid url)".
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${firstSegment(u.pathname)}`;
  } catch {
    return "(invalid url)";
  }
}

/**
 * A rule's webhook URL as the admin's own tools print it (`mailgw rules list`, `mailgw test`),
 * and the stats page: redactUrl, and `?…` when it had a query, so two rules that differ only in
 * their query's token still read as different. Their output is pasted into tickets and chats.
 */
export function shownWebhookUrl(url: string): string {
  const shown = redactUrl(url);
  return URL.canParse(url) && new URL(url).search ? `${shown}?…` : shown;
}

/**
 * `/services/T0/B0/x` → `/services/…`; a path of one segment (`/hook`, `/hook/`) as it is, unless
 * that segment looks like a token: then `/…`.
 */
function firstSegment(path: string): string {
  const cut = path.indexOf("/", 1);
  const segment = cut < 0 ? path.slice(1) : path.slice(1, cut);
  if (looksLikeToken(segment)) return "/…";
  return cut < 0 || cut === path.length - 1 ? path : `${path.slice(0, cut)}/…`;
}

/**
 * 16 or more characters of one run of letters, digits and `-_.~%`, with a digit among them: a
 * UUID, a hex or base64url key. A path word an admin chose (`/inbound`, `/mailgw-hook`) has no
 * digit or is short, so it stays readable, which is what tells two webhooks apart on the page.
 */
function looksLikeToken(segment: string): boolean {
  return segment.length >= 16 && /^[A-Za-z0-9._~%-]+$/.test(segment) && /[0-9]/.test(segment);
}

/**
 * Every URL in `text` (a receiver's reply, an error message) as redactUrl shows it: absolute ones,
 * and references by path (`/hook/?token=…`, `//host/…`), which a redirect page writes as often
 * (Express's trailing-slash redirect: "Redirecting to /hook/?token=abc"). A path must follow a
 * space, a quote, `(`, `=` or `>` to count, so "and/or" and dates stay as written.
 */
export function redactUrlsIn(text: string): string {
  return text
    .replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi, (url) => redactUrl(url))
    .replace(/(^|[\s"'(=>])(\/[^\s"'<>]*)/g, (_, before: string, ref: string) => before + redactReference(ref));
}

/** `/a/b?x` → `/a/…`; `//host/a/b` → `//host/a/…` (a reference that keeps the page's scheme). */
function redactReference(ref: string): string {
  if (ref.startsWith("//")) return redactUrl(`http:${ref}`).replace(/^http:/, "");
  try {
    return firstSegment(new URL(ref, "http://h").pathname);
  } catch {
    return "/…";
  }
}

/**
 * redactUrl for text that may be no URL at all (a rules file's misspelt webhook url, quoted by
 * lint): the same parts go — a login, a query or fragment, the path past its first segment — read
 * from the text as written, so what made it invalid (a space in the host, a wrong scheme) stays
 * visible. Lint's messages reach serve's log when a reload or a start is refused.
 */
export function redactUrlText(text: string): string {
  if (URL.canParse(text)) return redactUrl(text);
  const m = /^([a-z][a-z0-9+.-]*:\/\/)?([^/?#]*)([^?#]*)/i.exec(text);
  const scheme = m?.[1] ?? "";
  const authority = (m?.[2] ?? "").replace(/^.*@/s, "…@");
  const path = m?.[3] ?? "";
  const cut = path.indexOf("/", 1);
  const shownPath = cut < 0 ? path : `${path.slice(0, cut)}/…`;
  const rest = text.length > (m?.[0].length ?? 0) && !shownPath.endsWith("…") ? "…" : "";
  return `${scheme}${authority}${shownPath}${rest}`;
}
