/**
 * What a failed webhook attempt says: the status with its reason phrase, what to change for the
 * failures an admin fixes in a config (a proxy's body limit, a moved URL, an untrusted or
 * misnamed certificate), and a proxy's HTML error page reduced to its text. Units; the real
 * nginx and receivers are in test/e2e/interop-webhook.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { describeStatus, parseRetryAfter, replyLine, requestErrorHint } from "../../src/act/webhook-advice.ts";

const NGINX_413 =
  "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n" +
  "<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n";

describe("webhook failure advice", () => {
  test("413 names the size posted and the proxy setting to raise", () => {
    expect(describeStatus({ status: 413, statusText: "Request Entity Too Large", location: null, bodyBytes: 1_900_000 })).toBe(
      "HTTP 413 Request Entity Too Large: the receiver or a proxy in front of it refused a 1.8 MB post; " +
        "raise its request body limit (nginx: client_max_body_size, default 1m), then mailgw queue retry",
    );
    // A small post in a unit that shows it (it read "0.0 MB").
    expect(describeStatus({ status: 413, statusText: "", location: null, bodyBytes: 1_640 })).toContain("refused a 1.6 KB post");
    expect(describeStatus({ status: 413, statusText: "", location: null, bodyBytes: 900 })).toContain("refused a 900-byte post");
  });

  test("a redirect names where to, and that queued posts keep the old URL", () => {
    expect(describeStatus({ status: 308, statusText: "Permanent Redirect", location: "https://hooks.example.com/new", bodyBytes: 10 })).toBe(
      "HTTP 308 Permanent Redirect to https://hooks.example.com/new (redirects are not followed: put the new address in the rule's url; posts already queued keep the old one)",
    );
    expect(describeStatus({ status: 302, statusText: "", location: null, bodyBytes: 10 })).toMatch(/^HTTP 302 \(redirects are not followed/);
  });

  test("other statuses are the status and reason phrase alone", () => {
    expect(describeStatus({ status: 300, statusText: "Multiple Choices", location: null, bodyBytes: 10 })).toMatch(/^HTTP 300 Multiple Choices \(redirects are not followed/);
    expect(describeStatus({ status: 399, statusText: "", location: null, bodyBytes: 10 })).toMatch(/redirects are not followed/);
    expect(describeStatus({ status: 400, statusText: "Bad Request", location: null, bodyBytes: 10 })).toBe("HTTP 400 Bad Request");
    expect(describeStatus({ status: 502, statusText: "", location: null, bodyBytes: 10 })).toBe("HTTP 502");
  });

  test("an HTML error page becomes its text; other replies stay as they are, on one line", () => {
    expect(replyLine(NGINX_413, "text/html")).toBe("413 Request Entity Too Large nginx/1.22.1");
    expect(replyLine(NGINX_413, null)).toBe("413 Request Entity Too Large nginx/1.22.1");
    expect(replyLine('{"error": "<b>not</b> html"}\n', "application/json")).toBe('{"error": "<b>not</b> html"}');
    expect(replyLine("  ok \r\n", "text/plain")).toBe("ok");
  });

  test("certificate errors say how to fix them; other request errors get no hint", () => {
    for (const e of ["self signed certificate", "unable to verify the first certificate", "self signed certificate in certificate chain", "unable to get local issuer certificate"]) {
      expect(requestErrorHint(e)).toContain("NODE_EXTRA_CA_CERTS=");
    }
    expect(requestErrorHint('ERR_TLS_CERT_ALTNAME_INVALID fetching "https://127.0.0.1:8443/hook"')).toBe("use a host name the certificate lists in the rule's url");
    expect(requestErrorHint("certificate has expired")).toBe("renew the receiver's certificate");
    expect(requestErrorHint("ECONNREFUSED: Unable to connect. Is the computer able to access the url?")).toBeNull();
  });
});

describe("parseRetryAfter", () => {
  const now = Date.parse("2026-11-23T12:00:00Z");
  test("delay-seconds and an HTTP-date (past dates are 0); anything else is ignored", () => {
    expect(parseRetryAfter("120", now)).toBe(120_000);
    expect(parseRetryAfter(" 0 ", now)).toBe(0);
    // Digits beyond any sensible delay stay a finite number (the scheduler caps it at an hour).
    expect(parseRetryAfter("99999999999999999999999", now)).toBe(1e12);
    expect(parseRetryAfter("Mon, 23 Nov 2026 12:05:00 GMT", now)).toBe(300_000);
    expect(parseRetryAfter("Mon, 23 Nov 2026 11:00:00 GMT", now)).toBe(0);
    for (const bad of [null, "", "-5", "1.5", "soon", "12 34"]) expect(parseRetryAfter(bad, now)).toBeNull();
  });
});
