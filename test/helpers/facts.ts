/**
 * Test helper: builds MessageFacts with neutral defaults so a test names only the fields
 * it is about. Headers may be given as a plain object (names are lower-cased, single
 * values wrapped in a list), matching what parse/ produces.
 */
import type { MessageFacts } from "../../src/types.ts";

export type FactsInput = Partial<Omit<MessageFacts, "headers">> & { headers?: Record<string, string | string[]> };

export function makeFacts(input: FactsInput = {}): MessageFacts {
  const { headers = {}, ...rest } = input;
  const headerMap = new Map<string, string[]>();
  for (const [name, value] of Object.entries(headers)) {
    const key = name.toLowerCase();
    headerMap.set(key, [...(headerMap.get(key) ?? []), ...(Array.isArray(value) ? value : [value])]);
  }
  return {
    subject: "",
    from: "",
    fromName: "",
    to: [],
    cc: [],
    headers: headerMap,
    body: "",
    attachments: [],
    attachmentTypes: [],
    size: 0,
    mailFrom: "",
    rcpt: [],
    clientIp: "",
    helo: "",
    tls: false,
    spf: "none",
    dkim: "none",
    dmarc: "none",
    ...rest,
    // As parse/ builds them: every From address and name; `from`/`fromName` are the first.
    fromAll: rest.fromAll ?? (rest.from ? [rest.from] : []),
    fromNames: rest.fromNames ?? (rest.fromName ? [rest.fromName] : []),
  };
}
