/**
 * The error a smtp-server handler passes to its callback to refuse a command: the library
 * answers `responseCode` and `message` verbatim (connection.ts keeps an enhanced code the text
 * starts with), so the text is public and generic; the detail goes to the log. Shared by the
 * MAIL/RCPT handlers (envelope-handlers.ts) and the DATA handler (data-handler.ts).
 */
export const smtpFailure = (code: number, text: string) => Object.assign(new Error(text), { responseCode: code });
