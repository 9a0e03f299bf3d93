/**
 * acceptedOutcome: what a relay reply that took the message for some recipients comes to, from
 * nodemailer's rejectedErrors (the shape smtp-connection gives them: recipient, responseCode,
 * response). 5xx → refused, 4xx or no code → deferred; the message is delivered either way,
 * unless a deferred recipient cannot be named (then the whole delivery is retried).
 */
import { expect, test } from "bun:test";
import { acceptedOutcome } from "../../src/act/relay.ts";

const rejected = (recipient: string | undefined, response: string) => ({
  recipient,
  response,
  responseCode: Number(/^\d+/.exec(response)?.[0]) || false,
});

test("no refusal: delivered with the relay's reply", () => {
  expect(acceptedOutcome("250 2.0.0 Ok: queued", undefined)).toEqual({ kind: "delivered", reply: "250 2.0.0 Ok: queued" });
});

test("5xx only: delivered, refused recipients apart", () => {
  expect(acceptedOutcome("250 Ok", [rejected("b@x.example", "550 5.1.1 No such user")])).toEqual({
    kind: "delivered",
    reply: "250 Ok (refused: b@x.example: 550 5.1.1 No such user)",
    refused: { recipients: ["b@x.example"], error: "recipients refused by the relay: b@x.example: 550 5.1.1 No such user" },
  });
});

test("4xx only: delivered (not temporary: the accepted recipients must not get another copy), deferred recipients apart", () => {
  expect(acceptedOutcome("250 Ok", [rejected("b@x.example", "450 4.2.1 Mailbox busy")])).toEqual({
    kind: "delivered",
    reply: "250 Ok (deferred: b@x.example: 450 4.2.1 Mailbox busy)",
    deferred: { recipients: ["b@x.example"], error: "recipients deferred by the relay: b@x.example: 450 4.2.1 Mailbox busy" },
  });
});

test("4xx and 5xx together: each set apart; a reply without a code counts as temporary", () => {
  const outcome = acceptedOutcome("250 Ok", [
    rejected("b@x.example", "550 5.1.1 No such user"),
    rejected("c@x.example", "451 4.3.0 Try later"),
    rejected("d@x.example", "odd reply"),
  ]);
  expect(outcome).toMatchObject({
    kind: "delivered",
    refused: { recipients: ["b@x.example"] },
    deferred: { recipients: ["c@x.example", "d@x.example"] },
  });
});

test("a deferred recipient without an address: the whole delivery is retried (a duplicate, never a loss)", () => {
  expect(acceptedOutcome("250 Ok", [rejected(undefined, "450 4.2.1 Mailbox busy")])).toMatchObject({ kind: "temporary" });
});

// RFC 5321 4.5.3.1.10: "452 too many recipients" is the relay's cap per message; the rest go in
// a new transaction at once. Any other 4xx among them (a busy mailbox) keeps the backoff.
test("452 4.5.3 too many recipients only: deferred recipients marked for a new transaction at once", () => {
  const over = [rejected("c@x.example", "452 4.5.3 Too many recipients"), rejected("d@x.example", "452 Error: too many recipients")];
  expect(acceptedOutcome("250 Ok", over)).toMatchObject({ kind: "delivered", deferred: { recipients: ["c@x.example", "d@x.example"], retryNow: true } });
  const busy = acceptedOutcome("250 Ok", [...over, rejected("e@x.example", "452 4.2.2 Mailbox full")]);
  expect(busy.kind === "delivered" && busy.deferred?.retryNow).toBeUndefined();
});
