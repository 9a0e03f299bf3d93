/**
 * Relay settings mailgw accepts but that rarely do what was meant (TLS mode vs port, `none`
 * off this machine): warned at `serve` start, and a hint on the cryptic errors they produce.
 * Units, plus the real `serve` (from source) for the start-up warning.
 */
import { describe, expect, test } from "bun:test";
import { relayErrorHint, relaySettingWarnings } from "../../src/act/relay-advice.ts";
import type { RelayConfig } from "../../src/config/config.ts";
import { serveDir, startServe } from "../smtp/serve-process.ts";

function relay(o: Partial<RelayConfig>): RelayConfig {
  return { host: "smtp.mailgun.org", port: 587, user: "postmaster@mg.example.com", pass: "secret", secure: "starttls", tlsVerify: true, ...o };
}

describe("relay settings warnings", () => {
  test("the usual settings (587 starttls, 465 tls, none on loopback) get none", () => {
    expect(relaySettingWarnings(relay({}))).toEqual([]);
    expect(relaySettingWarnings(relay({ port: 465, secure: "tls" }))).toEqual([]);
    expect(relaySettingWarnings(relay({ host: "127.0.0.1", port: 2525, secure: "none" }))).toEqual([]);
    expect(relaySettingWarnings(relay({ host: "localhost", port: 25, secure: "none" }))).toEqual([]);
  });

  test("TLS mode that does not fit the port, and none to another machine", () => {
    expect(relaySettingWarnings(relay({ secure: "tls" })).join("\n")).toContain("set RELAY_SMTP_SECURE=starttls, or RELAY_SMTP_PORT=465");
    expect(relaySettingWarnings(relay({ port: 465 })).join("\n")).toContain("set RELAY_SMTP_SECURE=tls");
    const clear = relaySettingWarnings(relay({ secure: "none", port: 25 })).join("\n");
    expect(clear).toContain("RELAY_SMTP_PASS go unencrypted to smtp.mailgun.org");
    expect(clear).not.toContain("secret");
  });

  test("error hints name the setting to change", () => {
    expect(relayErrorHint({ secure: "tls", tlsVerify: true, user: "u" }, "ESOCKET: error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER")).toContain("RELAY_SMTP_SECURE=starttls");
    const noGreeting = relayErrorHint({ secure: "starttls", tlsVerify: true, user: "u" }, "ETIMEDOUT: Greeting never received");
    expect(noGreeting).toContain("RELAY_SMTP_SECURE=tls");
    // A relay that is merely slow to greet is named first, not only the port-465 mistake.
    expect(noGreeting).toContain("no SMTP greeting within 15 s: the relay is overloaded or slow to greet");
    expect(relayErrorHint({ secure: "starttls", tlsVerify: true, user: "u" }, "ESOCKET: self signed certificate")).toContain("RELAY_SMTP_TLS_VERIFY=false");
    // A self-signed certificate is not fixed by changing the host name, a name mismatch is.
    expect(relayErrorHint({ secure: "starttls", tlsVerify: true, user: "u" }, "ESOCKET: self signed certificate")).not.toContain("RELAY_SMTP_HOST");
    expect(relayErrorHint({ secure: "starttls", tlsVerify: true, user: "u" }, "ESOCKET: unable to get local issuer certificate")).toContain("trusted CA");
    const mismatch = "ESOCKET: Hostname/IP does not match certificate's altnames: IP: 127.0.0.1 is not in the cert's list: ";
    expect(relayErrorHint({ secure: "starttls", tlsVerify: true, user: "u" }, mismatch)).toContain("set RELAY_SMTP_HOST to a name the certificate lists");
    expect(relayErrorHint({ secure: "starttls", tlsVerify: true, user: "u" }, "ESOCKET: certificate has expired")).toContain("renew");
    expect(relayErrorHint({ secure: "starttls", tlsVerify: false, user: "u" }, "ESOCKET: self signed certificate")).toBeNull();
    expect(relayErrorHint({ secure: "starttls", tlsVerify: true, user: "u" }, "EAUTH: Invalid login: 535 Authentication failed")).toBe(
      "the relay refused the login: check RELAY_SMTP_USER and RELAY_SMTP_PASS",
    );
    // A 535 to a message (not the login) is that message's: no login hint.
    expect(relayErrorHint({ secure: "starttls", tlsVerify: true, user: "u" }, "EENVELOPE: Mail command failed: 535 5.7.8 no")).toBeNull();
    const noStarttls = "ETLS: Error upgrading connection with STARTTLS: 500 Error: command not recognized";
    expect(relayErrorHint({ secure: "starttls", tlsVerify: true, user: "u" }, noStarttls)).toStartWith("the relay refused STARTTLS, which RELAY_SMTP_SECURE=starttls requires (no password was sent)");
    expect(relayErrorHint({ secure: "starttls", tlsVerify: true, user: "u" }, "ETLS: Error upgrading connection with STARTTLS: 454 4.7.0 TLS not available")).toContain("RELAY_SMTP_SECURE=tls");
    const required = "EENVELOPE: Mail command failed: 530 5.7.0 Authentication required";
    expect(relayErrorHint({ secure: "starttls", tlsVerify: true, user: null }, required)).toBe("the relay requires a login: set RELAY_SMTP_USER and RELAY_SMTP_PASS");
    expect(relayErrorHint({ secure: "starttls", tlsVerify: true, user: "u" }, required)).toContain("check RELAY_SMTP_SECURE");
  });
});

test("serve says at start which relay it uses and warns about RELAY_SMTP_SECURE=tls on port 587", async () => {
  const serve = await startServe("source", serveDir(), {
    RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: "587", RELAY_SMTP_SECURE: "tls", RELAY_SMTP_USER: "u", RELAY_SMTP_PASS: "hunter2-pass",
  });
  try {
    const started = await serve.waitForLog((l) => l.msg === "mailgw serve started");
    expect(started.relay).toBe("127.0.0.1:587 (tls, SASL)");
    const warning = await serve.waitForLog((l) => l.msg === "relay settings look wrong");
    expect(String(warning.warning)).toContain("RELAY_SMTP_PORT=587 is a STARTTLS port");
    expect(JSON.stringify(serve.logs)).not.toContain("hunter2-pass");
  } finally {
    expect(await serve.stop()).toBe(0);
  }
}, 30_000);
