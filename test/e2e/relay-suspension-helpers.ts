/**
 * What the relay-suspension e2e files share: sending a batch over one session, the deliveries'
 * rows as the database has them, and the log lines by message.
 */
import { expect } from "bun:test";
import { join } from "node:path";
import { openDatabase } from "../../src/store/db.ts";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import type { ServeProcess } from "../smtp/serve-process.ts";

export const SUSPENDED = "relay suspended: forwards wait, one is tried when the suspension ends";

/** Sends one message per subject over one session, `gapMs` apart. */
export async function send(serve: ServeProcess, subjects: string[], gapMs = 0): Promise<void> {
  const c = await RawClient.connect(serve.smtpPort);
  await greet(c);
  for (const subject of subjects) {
    expect(await sendMail(c, "orders@company.com", simpleMessage(subject))).toStartWith("250 2.0.0");
    if (gapMs > 0) await Bun.sleep(gapMs);
  }
  c.end();
}

export interface Row {
  subject: string;
  state: string;
  attempts: number;
  last_error: string | null;
}

export function rows(serve: ServeProcess): Row[] {
  const db = openDatabase(join(serve.dir, "data", "mail-gateway.db"), { readonly: true });
  try {
    return db
      .query<Row, []>("SELECT m.subject, d.state, d.attempts, d.last_error FROM deliveries d JOIN messages m ON m.id = d.message_id ORDER BY d.id")
      .all();
  } finally {
    db.close();
  }
}

export const logged = (serve: ServeProcess, msg: string) => serve.logs.filter((l) => l.msg === msg);
