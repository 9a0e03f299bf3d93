/**
 * One C function of libc through bun:ffi, with the calling thread's errno: for the system calls
 * Node's fs lacks (syncfs for the spool writer thread, flock for the data dir lock). Each thread
 * loads its own (bun:ffi handles do not cross Worker boundaries).
 * Failure: throws why (no libc for this platform, symbol missing); callers fall back.
 */
import { dlopen, FFIType, read } from "bun:ffi";

export interface LibcFunction {
  /** The function on int arguments, returning its int result. */
  call(...args: number[]): number;
  /** The calling thread's errno, read right after a failed call. */
  errno(): number;
}

/** Where libc and the thread's errno live. musl also answers to "libc.so.6" (its own libc). */
const LIBC_BY_PLATFORM: Partial<Record<NodeJS.Platform, { names: readonly string[]; errnoSymbol: "__errno_location" | "__error" }>> = {
  linux: { names: ["libc.so.6", "libc.so"], errnoSymbol: "__errno_location" },
  darwin: { names: ["libSystem.B.dylib", "/usr/lib/libSystem.B.dylib"], errnoSymbol: "__error" },
  freebsd: { names: ["libc.so.7"], errnoSymbol: "__error" },
};

/** `symbol(int × arity) → int` from this platform's libc. */
export function loadLibcFunction(symbol: string, arity: number): LibcFunction {
  const where = LIBC_BY_PLATFORM[process.platform];
  if (!where) throw new Error(`no libc to load ${symbol} from on ${process.platform}`);
  let lastError: unknown = null;
  for (const name of where.names) {
    try {
      const lib = dlopen(name, {
        [symbol]: { args: Array<FFIType>(arity).fill(FFIType.i32), returns: FFIType.i32 },
        [where.errnoSymbol]: { args: [], returns: FFIType.ptr },
      });
      const fn = lib.symbols[symbol] as ((...args: number[]) => number) | undefined;
      const errnoLocation = lib.symbols[where.errnoSymbol] as (() => ReturnType<typeof read.ptr> | null) | undefined;
      if (!fn || !errnoLocation) throw new Error(`${symbol} or ${where.errnoSymbol} not found in ${name}`);
      return {
        call: (...args) => Number(fn(...args)),
        errno: () => {
          const at = errnoLocation();
          return at === null ? -1 : read.i32(at, 0);
        },
      };
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError instanceof Error ? lastError : new Error("libc not found");
}
