/**
 * For a test file: the real `mailgw serve` (from source) in a fresh dir, with a rules file that
 * posts to a webhook receiver running in this process; made before the file's tests (on the
 * ports `ports` picks), stopped and removed after them.
 */
import { afterAll, beforeAll } from "bun:test";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { WebhookPayload } from "../../src/act/webhook-payload.ts";
import { serveDir, startServe, until, type ServeProcess } from "../smtp/serve-process.ts";

export interface ReceivedPost {
  /** The request body as the receiver got it. */
  text: string;
  post: WebhookPayload;
}

export interface WebhookSuite {
  serve(): ServeProcess;
  /** The post of message `id`, once it has come (`what` names it in a timeout). */
  postOf(id: string, what: string): Promise<ReceivedPost>;
}

/** `rules(url)`: the rules file's text, given the receiver's URL. */
export function serveWithWebhook(ports: () => Promise<number[]>, rules: (url: string) => string): WebhookSuite {
  const posts = new Map<string, ReceivedPost>();
  let receiver: ReturnType<typeof Bun.serve> | null = null;
  let serve: ServeProcess | null = null;
  let dir = "";
  beforeAll(async () => {
    const [hookPort, smtpPort, httpPort] = await ports();
    receiver = Bun.serve({
      port: hookPort,
      hostname: "127.0.0.1",
      async fetch(req) {
        const text = await req.text();
        const post = JSON.parse(text) as WebhookPayload;
        posts.set(post.id, { text, post });
        return new Response("ok");
      },
    });
    dir = serveDir();
    await writeFile(join(dir, "rules.yaml"), rules(`http://127.0.0.1:${receiver.port}/in`));
    serve = await startServe("source", dir, { SMTP_PORT: String(smtpPort), HTTP_PORT: String(httpPort) });
  }, 60_000);
  afterAll(async () => {
    await serve?.stop();
    receiver?.stop(true);
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 30_000);
  return {
    serve: () => {
      if (serve === null) throw new Error("serve is not running (beforeAll failed?)");
      return serve;
    },
    async postOf(id, what) {
      await until(what, async () => posts.has(id), 30_000);
      return posts.get(id) as ReceivedPost;
    },
  };
}
