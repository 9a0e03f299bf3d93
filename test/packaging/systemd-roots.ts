/**
 * What the `mailgw systemd install` test files share: the compiled executable copied once per
 * file, and `--root` directories made per test and removed after the file.
 */
import { afterAll, beforeAll } from "bun:test";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { copyBinaryToTemp, type CopiedBinary } from "./binary.ts";

export interface SystemdTestRoots {
  /** The copied executable (set in beforeAll). */
  readonly binary: CopiedBinary;
  /** A new root under the temp dir, named `prefix…`; `mode` when given (the umask leaves 0700). */
  newRoot(): string;
}

export function systemdTestRoots(prefix: string, mode?: number): SystemdTestRoots {
  let copied: CopiedBinary | null = null;
  const roots: string[] = [];
  beforeAll(() => {
    copied = copyBinaryToTemp();
  }, 60_000);
  afterAll(() => {
    copied?.cleanup();
    for (const r of roots) rmSync(r, { recursive: true, force: true });
  }, 60_000);
  return {
    get binary(): CopiedBinary {
      if (copied === null) throw new Error("the executable is copied in beforeAll");
      return copied;
    },
    newRoot(): string {
      const root = mkdtempSync(join(tmpdir(), prefix));
      if (mode !== undefined) chmodSync(root, mode);
      roots.push(root);
      return root;
    },
  };
}
