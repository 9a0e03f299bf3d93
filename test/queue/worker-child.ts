/**
 * A delivery worker in its own process, configured from the environment like serve, for
 * the kill -9 test (test/queue/crash.test.ts). Prints "ready" once started; runs until killed.
 */
import { loadConfig } from "../../src/config/config.ts";
import { createLogger } from "../../src/log/logger.ts";
import { createDeliveryWorker } from "../../src/queue/worker.ts";
import { openDatabase } from "../../src/store/db.ts";

const config = loadConfig({ isTty: false });
const db = openDatabase(config.databasePath);
const worker = createDeliveryWorker({ config, db, logger: createLogger({ level: "info", format: "json" }), pollIntervalMs: 50 });
worker.start();
process.stdout.write("ready\n");
process.on("SIGTERM", () => void worker.stop().then(() => process.exit(0)));
setInterval(() => undefined, 1 << 30);
