import { expect, test } from "bun:test";
import { newSessionState, noteConnectionError } from "../../src/smtp/session-log.ts";

function errorOf(message: string, code?: string): Error {
  return Object.assign(new Error(message), code === undefined ? {} : { code });
}

test("a socket error's code is named once in the session line", () => {
  // Bun's own socket errors carry the code in the message already.
  const bun = newSessionState("s1", "127.0.0.1", 0);
  noteConnectionError(bun, errorOf("EPIPE: broken pipe, read", "EPIPE"));
  expect(bun.error).toBe("EPIPE: broken pipe, read");
  // A message without it gets the code in front.
  const plain = newSessionState("s2", "127.0.0.1", 0);
  noteConnectionError(plain, errorOf("socket hang up", "ECONNRESET"));
  expect(plain.error).toBe("ECONNRESET: socket hang up");
});
