/** `mailgw rules list`'s columns line up in a terminal with wide (CJK) and combining characters. */
import { expect, test } from "bun:test";
import { alignColumns } from "../../src/rules/describe.ts";

test("cells are padded to terminal columns: a Korean category takes two a character", () => {
  const out = alignColumns([
    ["100", "quote", "forward", "견적 요청", "sales@company.com"],
    ["1", "catch-all", "archive", "default", "LAST"],
  ]).split("\n");
  const column = (line: string, text: string): number => Bun.stringWidth(line.slice(0, line.indexOf(text)));
  expect(column(out[0] ?? "", "sales@")).toBe(column(out[1] ?? "", "LAST"));
  expect(out[1]).toStartWith("  1  catch-all");
});
