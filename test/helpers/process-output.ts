/** Everything a child process writes to stdout and stderr, collected as it arrives (for error messages and log checks). */
import type { Subprocess } from "bun";

export function collectOutput(proc: Subprocess<"ignore" | "pipe", "pipe", "pipe">): () => string {
  let text = "";
  const collect = async (s: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of s) text += decoder.decode(chunk, { stream: true });
  };
  void collect(proc.stdout);
  void collect(proc.stderr);
  return () => text;
}
