import { closeSync, constants as fsConstants, fstatSync, openSync, readSync, type Stats } from "node:fs";
import { open } from "node:fs/promises";

/**
 * A whole file read into one buffer of its size, for message files (spool, archive) that can be
 * 25 MB. Not fs/promises readFile: in Bun (1.4.5) it kept twice the file resident (25 MB file:
 * RSS +51 MB, still after a full GC; this: +26 MB). Off the event loop, like readFile.
 * Failure: rejects with the file system's error (a missing file: code ENOENT).
 */
export async function readFileBytes(path: string): Promise<Uint8Array> {
  return new Uint8Array(await Bun.file(path).arrayBuffer());
}

/**
 * A configuration file (rules, TLS key and certificate) read whole, at most `maxBytes`: only a
 * regular file, opened without blocking. A FIFO put at the path waited for a writer forever
 * (the certificate on the event loop: every SMTP and HTTP reply with it; the rules in a pool
 * thread: hot reload silently gone), and /dev/zero or a 1 GB file was read whole before its
 * size was checked (gigabytes of RSS). Failure: an Error with `code` ENOENT, EACCES… as the
 * file system says, or ENOTREG / EFBIG with the reason in the message.
 */
export async function readConfigFile(path: string, maxBytes: number): Promise<Buffer> {
  const handle = await open(path, OPEN_FLAGS);
  try {
    const size = checkConfigFile(path, await handle.stat(), maxBytes);
    const buf = Buffer.alloc(size);
    const { bytesRead } = await handle.read(buf, 0, size, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** readConfigFile for start-up and certificate reloads, which read synchronously. */
export function readConfigFileSync(path: string, maxBytes: number): Buffer {
  const fd = openSync(path, OPEN_FLAGS);
  try {
    const size = checkConfigFile(path, fstatSync(fd), maxBytes);
    const buf = Buffer.alloc(size);
    return buf.subarray(0, readSync(fd, buf, 0, size, 0));
  } finally {
    closeSync(fd);
  }
}

// O_NONBLOCK: opening a FIFO without a writer returns at once (a regular file reads as always).
const OPEN_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY;

/** The bytes to read (the size, plus one to notice a file that grew past the limit meanwhile). */
function checkConfigFile(path: string, st: Stats, maxBytes: number): number {
  if (!st.isFile()) throw Object.assign(new Error(`${path} is not a regular file`), { code: "ENOTREG" });
  if (st.size > maxBytes) throw Object.assign(new Error(`${path} is larger than ${maxBytes} bytes`), { code: "EFBIG" });
  return Math.min(st.size, maxBytes) + 1;
}
