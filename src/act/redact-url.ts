/**
 * A webhook URL as anyone but the rules file's owner sees it: in logs, attempt records, the
 * stats page and `mailgw queue list`. No credentials and no query string, which carry tokens; and
 * no path past its first segment, because Slack (`/services/T…/B…/<token>`), Discord
 * (`/api/webhooks/<id>/<token>`) and similar receivers carry their secret in the path: whoever
 * could read the stats page or the log could have posted as the gateway.
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

/** `/services/T0/B0/x` → `/services/…`; a path of one segment (`/hook`, `/hook/`) as it is. */
function firstSegment(path: string): string {
  const cut = path.indexOf("/", 1);
  return cut < 0 || cut === path.length - 1 ? path : `${path.slice(0, cut)}/…`;
}
