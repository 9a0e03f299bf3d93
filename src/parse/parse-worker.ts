/**
 * Worker thread that turns raw message bytes into MessageFacts (extractFacts), so a full
 * MIME parse never runs on the event loop and its parse tree never lives in the main heap.
 * Protocol (structured clone; the message bytes are transferred, not copied):
 *   in:  ParseRequest  { kind: "parse", job, bytes, envelope, content, giveBack }
 *        or { kind: "parse-file", job, path, envelope, content } (the worker reads the file;
 *        a file that cannot be read fails the job like a crash: the pool's caller decides)
 *   out: ParseReply    { kind: "parsed", job, facts, bytes }  (bytes transferred back when
 *        `giveBack`, else null) — only the facts go back, never the parse tree.
 *   out: { kind: "ready" } once, when loaded.
 * Trusts: nothing in the bytes (extractFacts never throws, its limits bound the CPU).
 * Failure: an unexpected exception escapes as the worker's error event; the pool answers that
 * job and starts a new worker.
 */
import { extractFacts, extractFactsFromFile } from "./extract.ts";
import type { ParseReply, ParseRequest } from "./parse-pool.ts";

declare const self: Worker;

self.onmessage = async (event: MessageEvent<ParseRequest>) => {
  const req = event.data;
  if (req.kind === "parse-file") {
    // The file's bytes are collected before postal-mime runs: this thread never holds both.
    const facts = await extractFactsFromFile(req.path, req.envelope, { content: req.content, onRawDropped: () => Bun.gc(true) });
    const reply: ParseReply = { kind: "parsed", job: req.job, facts, bytes: null };
    self.postMessage(reply);
    return;
  }
  if (req.kind !== "parse") return;
  const facts = await extractFacts(new Uint8Array(req.bytes), req.envelope, { content: req.content });
  const reply: ParseReply = { kind: "parsed", job: req.job, facts, bytes: req.giveBack ? req.bytes : null };
  self.postMessage(reply, req.giveBack ? [req.bytes] : []);
};

self.postMessage({ kind: "ready" });
