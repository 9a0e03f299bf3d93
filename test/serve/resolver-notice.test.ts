/**
 * resolverProblem on real files in a temp dir: the cases where c-ares has no name server and
 * falls back to 127.0.0.1 (no file, a file without a `nameserver` line), and one where it has.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolverProblem } from "../../src/serve/resolver-notice.ts";

const dir = mkdtempSync(join(tmpdir(), "mailgw-resolv-"));
const file = (name: string, text: string): string => {
  writeFileSync(join(dir, name), text);
  return join(dir, name);
};

describe("resolverProblem", () => {
  test("a missing file, and one with only comments, search and options, have no name server", () => {
    expect(resolverProblem(join(dir, "absent.conf"))).toBe(`${join(dir, "absent.conf")} does not exist`);
    const none = file("none.conf", "# nameserver 10.0.0.1\nsearch example.com\noptions ndots:2\n");
    expect(resolverProblem(none)).toBe(`${none} lists no nameserver`);
  });

  test("a nameserver line (indented or not) is enough", () => {
    expect(resolverProblem(file("one.conf", "search example.com\nnameserver 127.0.0.53\n"))).toBeNull();
    expect(resolverProblem(file("indented.conf", "  nameserver\t::1\n"))).toBeNull();
  });
});
