/**
 * The SMTP listener alone (src/smtp/) with a no-op MessageSink, to tell the cost of the
 * session layer from the pipeline's: `bun bench/smtp-listener.ts PORT` then drive it with
 * /work/shared/bench-peers/smtp-bench.sh -t 127.0.0.1:PORT. Loopback only; logs discarded.
 */
import { loadConfig } from "../src/config/config.ts";
import { silentLogger } from "../src/log/logger.ts";
import { createSmtpServer } from "../src/smtp/server.ts";
import type { MessageSink } from "../src/types.ts";

const port = process.argv[2] ?? "2590";
const config = loadConfig({ env: { SMTP_HOST: "127.0.0.1", SMTP_PORT: port, SMTP_HOSTNAME: "mx.bench", RATE_LIMIT_MAX: "1000000000" }, envFile: "/nonexistent" });
let n = 0;
const sink: MessageSink = {
  receive: async () => ({ id: `m${++n}`, decision: { rule: null, category: "default", action: "archive", forwardTo: [], url: null, rejectMessage: null, archive: true } }),
};
const smtp = createSmtpServer({ smtp: config.smtp, logger: silentLogger, sink, domains: () => ["company.com"] });
const address = await smtp.listen();
console.log(`listening ${address.host}:${address.port}`);
process.on("SIGTERM", () => void smtp.close(100).then(() => process.exit(0)));
