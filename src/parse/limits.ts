/**
 * Parsing limits. Every message the gateway parses comes from an untrusted sender, so each
 * stage that could cost super-linear time or unbounded memory is capped here. A message
 * that hits a limit is still classified: the facts are partial and `parseError` says which
 * limit was hit. Together these keep any message up to 25 MB under one second of CPU
 * (measured by bench/hostile-parse.ts).
 */

/** Top-level header bytes read for facts. Stops a 20 MB header block from being decoded and scanned. */
export const MAX_HEADER_BLOCK_BYTES = 1024 * 1024;

/** Header fields kept from the top-level block. Stops 100,000 one-line fields from filling the header map. */
export const MAX_HEADER_FIELDS = 1000;

/**
 * Past MAX_HEADER_FIELDS, fields the facts and the MIME parse read by name (header-block.ts
 * KEPT_PAST_LIMIT) are still kept, up to this many: else 1,001 padding fields before a
 * `Subject: [SPAM]` hid it from every subject rule (Postfix's header_checks see 100 KB of header).
 */
export const MAX_NAMED_FIELDS_PAST_LIMIT = 100;

/**
 * Bytes of one header field value; longer values are cut. Stops a single 2 MB To:/Subject: of
 * encoded words from reaching the RFC 2047 decoder and the address parser.
 */
export const MAX_HEADER_FIELD_BYTES = 64 * 1024;

/**
 * Bytes at the start of a stored message that a header-only parse reads (the header block limit
 * plus two field lengths, so a field crossing the limit is cut exactly as in a whole-message
 * parse): serve parses only these of a spilled message when no rule reads the body
 * (pipeline/message-classifier.ts). Header facts must read nothing past them (header-text.ts).
 */
export const HEADER_SECTION_BYTES = MAX_HEADER_BLOCK_BYTES + 2 * MAX_HEADER_FIELD_BYTES;

/** Addresses kept per address header list (To, Cc). Stops a To: of 300,000 short addresses. */
export const MAX_ADDRESSES_PER_LIST = 1000;

/** From addresses kept (RFC 5322 allows a list; real mail has one, a forgery a few). */
export const MAX_FROM_MAILBOXES = 100;

/** MIME multipart nesting depth (postal-mime `maxNestingDepth`). Stops deeply nested multiparts. */
export const MAX_MIME_DEPTH = 20;

/**
 * Header bytes of all MIME parts together (postal-mime `maxHeadersSize`); the top-level
 * header block is handled by this module and not counted. Stops part headers (file names
 * of joined encoded words, huge parameter lists) from costing decode time.
 */
export const MAX_MIME_PART_HEADER_BYTES = 256 * 1024;

/**
 * Lines starting with "--" handed to postal-mime per message. Each such line is compared
 * with every open boundary and each boundary line may open a part, so this bounds both the
 * number of parts and the boundary-scan cost (lines × open boundaries). The message is
 * parsed up to the line past the limit; the rest is not inspected.
 */
export const MAX_BOUNDARY_LINES = 10_000;

/**
 * When postal-mime refuses a message (a limit above was hit inside it), it is parsed once
 * more, cut to this many boundary lines and MAX_RETRY_PARSE_BYTES, so the first parts of a
 * broken or hostile message are still inspected. Bounds the cost of the second attempt.
 */
export const MAX_RETRY_BOUNDARY_LINES = 1000;
export const MAX_RETRY_PARSE_BYTES = 4 * 1024 * 1024;

/** Attached message/rfc822 parts that are parsed in turn. Stops 50,000 sub-messages each costing a parser. */
export const MAX_NESTED_MESSAGES = 20;

/**
 * Depth of message/rfc822 inside message/rfc822 that is parsed: as deep as MAX_NESTED_MESSAGES
 * reach. Each level is one of those, and all share MAX_PARSE_BYTES_TOTAL and the line budget, so
 * a chain costs no more than as many siblings (bench/hostile-parse.ts, rfc822-chain-*: ~0.45 s).
 * It was 3: a file four forwarded-as-attachment messages down escaped every attachment rule.
 */
export const MAX_NESTED_MESSAGE_DEPTH = 20;

/**
 * Bytes handed to postal-mime for one message, its nested messages included. Stops a
 * 25 MB message nested in itself from being parsed several times over.
 */
export const MAX_PARSE_BYTES_TOTAL = 32 * 1024 * 1024;

/**
 * Content lines handed to postal-mime per message, its nested messages included (leaf-cut.ts).
 * Its cost is per line, not per byte: 20 MB of bare newlines took 10-15 s. A million lines is
 * more than the text any MAX_BODY_TEXT_CHARS needs unless lines are under a character long.
 */
export const MAX_PARSE_LINES = 1_000_000;

/**
 * Padded base64 units ("QQ=" ... each ended by '=') handed to postal-mime per message, its nested
 * messages included (leaf-cut.ts). Its decoder makes one buffer per unit, ~1 µs each: 4 MB of
 * "QQ=" took 1.1 s, and a base64 message/rfc822 part of 17 MB 5 s. Real base64 pads once per
 * part (some mailers once per line: ~55,000 in a 4 MB part).
 */
export const MAX_BASE64_PAD_UNITS = 100_000;

/** Characters of body text kept as a fact. Stops rule regexes from scanning 25 MB of text. */
export const MAX_BODY_TEXT_CHARS = 1_000_000;

/** Attachment names / types kept. Stops a message with 10,000 attachments from producing huge fact lists. */
export const MAX_ATTACHMENTS = 1000;
