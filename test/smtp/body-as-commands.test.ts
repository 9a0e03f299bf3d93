import { describe, expect, test } from "bun:test";
import { BodyAsCommands, HEADER_AS_COMMAND_TEXT, PIPELINED_AFTER_REFUSED_DATA_TEXT, isHeaderLine } from "../../src/smtp/body-as-commands.ts";

const line = (s: string): Buffer => Buffer.from(s, "latin1");

describe("body-as-commands", () => {
  test("a header line is a first word of printable ASCII ending at a colon (Postfix's is_header); no command is one", () => {
    for (const h of ["Subject: hi", "From:a@b", "X-Mailer: x", "Received: from x", "Content-Type:text/plain", "MAILFROM:<a@b>"]) expect({ h, is: isHeaderLine(line(h)) }).toEqual({ h, is: true });
    for (const c of ["MAIL FROM:<a@b>", "RCPT TO:<b@c>", "mail\tfrom:<a@b>", "DATA", "RSET", "", ": x", "Subject : hi", "Hello Bob,", "QUIT"]) expect({ c, is: isHeaderLine(line(c)) }).toEqual({ c, is: false });
  });

  test("a refused DATA marks only the lines handled before the next microtask; QUIT is let through", async () => {
    const watch = new BodyAsCommands();
    watch.dataRefused();
    expect(watch.refusal(line("RSET"))).toBe(PIPELINED_AFTER_REFUSED_DATA_TEXT);
    watch.dataRefused();
    expect(watch.refusal(line("quit"))).toBeNull();
    watch.dataRefused();
    await Promise.resolve();
    expect(watch.refusal(line("RSET"))).toBeNull();
    expect(watch.refusal(line("Subject: x"))).toBe(HEADER_AS_COMMAND_TEXT);
  });
});
