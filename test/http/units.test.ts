/**
 * The small pure pieces behind the page: chart scale, formatting, target display, and the
 * StatusSource adapter serve uses (dates → ms, reload counts renamed, no credentials).
 */
import { redactUrl, redactUrlsIn } from "../../src/act/redact-url.ts";
import { expect, test } from "bun:test";
import { formatCount, formatDay, formatDuration, formatPercent } from "../../src/http/format.ts";
import { niceCeiling } from "../../src/http/stats-chart.ts";
import { displayTarget } from "../../src/http/stats-data.ts";
import { createStatusSource } from "../../src/http/status-source.ts";

test("chart ceilings are round and halve to whole numbers", () => {
  const cases: [number, number][] = [[0, 4], [3, 4], [5, 6], [9, 10], [11, 20], [22, 30], [25, 30], [61, 80], [99, 100], [101, 200], [1234, 2000], [5000, 5000]];
  for (const [n, ceiling] of cases) {
    expect(niceCeiling(n), String(n)).toBe(ceiling);
    expect(Number.isInteger(niceCeiling(n) / 2)).toBe(true);
  }
});

test("formatting", () => {
  expect(formatCount(1234567)).toBe("1,234,567");
  expect(formatCount(12)).toBe("12");
  expect(formatPercent(null)).toBe("–");
  expect(formatPercent(0.756)).toBe("76%");
  expect(formatPercent(0.0123)).toBe("1.2%");
  expect(formatPercent(0)).toBe("0%");
  expect(formatDuration(42)).toBe("42 s");
  expect(formatDuration(5400)).toBe("1 h 30 min");
  expect(formatDuration(3 * 86400 + 7200)).toBe("3 d 2 h");
  expect(formatDay("2025-03-07")).toBe("Mar 7");
});

test("targets: forward addresses joined, webhook URLs without credentials, query or path past its first segment", () => {
  expect(displayTarget("forward", '["a@x.example","b@y.example"]')).toBe("a@x.example, b@y.example");
  expect(displayTarget("forward", "plain@x.example")).toBe("plain@x.example");
  expect(displayTarget("webhook", "https://user:pw@hooks.example:8443/in/abc?token=s3cret#frag")).toBe("https://hooks.example:8443/in/…?…");
  // Receivers that carry their secret in the path: shown, the secret is not.
  expect(displayTarget("webhook", "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX")).toBe("https://hooks.slack.com/services/…");
  expect(redactUrl("https://discord.com/api/webhooks/123456/s3cret-token")).toBe("https://discord.com/api/…");
  expect(redactUrl("http://127.0.0.1:8080/hook")).toBe("http://127.0.0.1:8080/hook");
  expect(redactUrl("http://127.0.0.1:8080/hook/")).toBe("http://127.0.0.1:8080/hook/");
  expect(redactUrl("http://127.0.0.1:8080/")).toBe("http://127.0.0.1:8080/");
  // The whole secret as the first (or only) segment: webhook.site, Make.
  expect(redactUrl("https://webhook.site/6f1c3a2e-9b7d-4c1e-8a5f-0d2b3c4e5f60")).toBe("https://webhook.site/…");
  expect(redactUrl("https://hook.eu1.make.com/abcdefgh1jklmnopqrstuvwxyz123456/")).toBe("https://hook.eu1.make.com/…");
  expect(redactUrl("https://x.example/0123456789abcdef0123/more")).toBe("https://x.example/…");
  expect(redactUrl("https://erp.internal/mailgw-inbound-hook")).toBe("https://erp.internal/mailgw-inbound-hook");
  expect(redactUrl("https://erp.internal/inbound2024/x")).toBe("https://erp.internal/inbound2024/…");
  expect(displayTarget("webhook", "not a url")).toBe("(invalid URL)");
});

test("URLs in a receiver's reply are shown as the rule's URL is, by path too", () => {
  expect(redactUrlsIn("Redirecting to https://erp.example/hook?token=abc")).toBe("Redirecting to https://erp.example/hook");
  // Express's trailing-slash redirect and HTML pages name a path, not a whole URL.
  expect(redactUrlsIn("Redirecting to /hook/?token=abc")).toBe("Redirecting to /hook/");
  expect(redactUrlsIn('<a href="/services/T0/B0/s3cret">here</a>')).toBe('<a href="/services/…">here</a>');
  expect(redactUrlsIn("moved to //other.example/api/webhooks/1/tok?x=1")).toBe("moved to //other.example/api/…");
  expect(redactUrlsIn("see /0123456789abcdef0123 now")).toBe("see /… now");
  // Not paths: a slash inside a word or a date.
  expect(redactUrlsIn("and/or 2024/01/02 a/b?c")).toBe("and/or 2024/01/02 a/b?c");
});

test("createStatusSource adapts serve's shapes", () => {
  let relay: { host: string; port: number; pass: string } | null = null;
  const loadedAt = new Date("2025-01-02T03:04:05Z");
  const status = createStatusSource({
    startedAt: 1000,
    smtpListening: () => true,
    tls: { enabled: true, required: true },
    relay: () => relay,
    rules: () => ({ version: "abc", loadedAt, lastError: "bad", lastErrorAt: new Date(5000), reloads: { ok: 2, error: 1 } }),
  });
  expect(status.relay()).toEqual({ configured: false, address: null, suspended: null });
  relay = { host: "smtp.example", port: 587, pass: "hunter2" };
  expect(status.relay()).toEqual({ configured: true, address: "smtp.example:587", suspended: null });
  expect(JSON.stringify(status.relay())).not.toContain("hunter2");
  expect(status.rules()).toEqual({ version: "abc", loadedAt: loadedAt.getTime(), lastError: "bad", lastErrorAt: 5000, reloads: { ok: 2, failed: 1 } });
  expect(status.smtpTls()).toEqual({ enabled: true, required: true });
});
