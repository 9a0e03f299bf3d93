/**
 * The descriptor guard's states with a fake open(): a process of `limit` descriptors, of which
 * `others` are taken by the rest of serve. The e2e proof against the real serve is in
 * test/e2e/serve-fd-exhaustion.test.ts.
 */
import { expect, test } from "bun:test";
import { DESCRIPTOR_HEADROOM, DESCRIPTOR_RESERVE, startDescriptorGuard } from "../../src/smtp/descriptor-guard.ts";
import { captureLogger } from "./helpers.ts";

function fakeProcess(limit: number) {
  const open = new Set<number>();
  let next = 1000;
  const p = {
    others: 0,
    open: (): number => {
      if (open.size + p.others >= limit) throw Object.assign(new Error("EMFILE: too many open files, open '/dev/null'"), { code: "EMFILE" });
      open.add(next);
      return next++;
    },
    close: (fd: number): void => void open.delete(fd),
    held: (): number => open.size,
  };
  return p;
}

test("holds its reserve; at the limit gives it back and says so; takes it again only with headroom to spare", () => {
  const proc = fakeProcess(100);
  const logger = captureLogger();
  const guard = startDescriptorGuard({ logger, open: proc.open, close: proc.close, openCount: () => 100 });
  try {
    expect(proc.held()).toBe(DESCRIPTOR_RESERVE);
    guard.check();
    expect(guard.short()).toBe(false);

    proc.others = 100 - DESCRIPTOR_RESERVE; // everything else taken: the probe fails
    guard.check();
    expect(guard.short()).toBe(true);
    expect(proc.held()).toBe(0);
    expect(logger.lines.filter((l) => l.level === "warn").map((l) => l.fields.error)).toEqual(["EMFILE: too many open files, open '/dev/null'"]);
    guard.noteRefused();

    // Room for the reserve but not for the headroom too: still short, nothing held.
    proc.others = 100 - DESCRIPTOR_RESERVE - DESCRIPTOR_HEADROOM + 1;
    guard.check();
    expect(guard.short()).toBe(true);
    expect(proc.held()).toBe(0);

    proc.others = 100 - DESCRIPTOR_RESERVE - DESCRIPTOR_HEADROOM;
    guard.check();
    expect(guard.short()).toBe(false);
    expect(proc.held()).toBe(DESCRIPTOR_RESERVE);
    expect(logger.lines.find((l) => l.msg.startsWith("file descriptors free again"))?.fields.refused).toBe(1);

    // A second shortage within the minute: no second warning.
    proc.others = 100 - DESCRIPTOR_RESERVE;
    guard.check();
    expect(guard.short()).toBe(true);
    expect(logger.lines.filter((l) => l.level === "warn")).toHaveLength(1);
  } finally {
    guard.stop();
  }
  expect(proc.held()).toBe(0);
  expect(guard.short()).toBe(false);
});

test("an open that fails for another reason is not a shortage; no /dev/null at all turns the guard off", () => {
  const logger = captureLogger();
  let fail: string | null = null;
  let fd = 0;
  const open = (): number => {
    if (fail !== null) throw Object.assign(new Error(fail), { code: fail });
    return ++fd;
  };
  const guard = startDescriptorGuard({ logger, open, close: () => {} });
  fail = "EACCES";
  guard.check();
  expect(guard.short()).toBe(false);
  guard.stop();

  fail = "ENOENT";
  const off = startDescriptorGuard({ logger, open, close: () => {} });
  off.check();
  expect(off.short()).toBe(false);
  expect(logger.lines.some((l) => l.level === "debug" && l.msg.startsWith("no file-descriptor guard"))).toBe(true);
  off.stop();
});
