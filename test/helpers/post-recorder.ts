/**
 * A webhook receiver for the tests: a Bun.serve on loopback that records when each post came
 * (Date.now(): under libfaketime, serve's and this process's clocks differ) and answers with
 * `answer(n)`, n being the post's number from 1.
 */
export interface PostRecorder {
  port: number;
  /** When each post arrived, in order. */
  posts: number[];
  stop(): Promise<void>;
}

export function recordPosts(answer: (n: number) => Response): PostRecorder {
  const posts: number[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      await req.arrayBuffer();
      posts.push(Date.now());
      return answer(posts.length);
    },
  });
  return { port: server.port as number, posts, stop: () => server.stop(true) };
}
