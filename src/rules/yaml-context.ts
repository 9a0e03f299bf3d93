/**
 * Walking a parsed YAML document while collecting diagnostics that point at nodes.
 * Positions come from the nodes' source ranges through a LineCounter (1-based line and
 * column). Aliases are dereferenced with a budget (MAX_ALIAS_RESOLUTIONS) so a crafted
 * file cannot make validation expand exponentially. Never throws on malformed input:
 * shape problems become diagnostics and the caller gets `null`.
 */
import { type Document, isAlias, isMap, isScalar, isSeq, type LineCounter, type Node, type Scalar, type YAMLMap, type YAMLSeq } from "yaml";
import { MAX_ALIAS_EXPANDED_BYTES, MAX_ALIAS_RESOLUTIONS, oneOf, quoted, suggestion } from "./schema.ts";
import type { Diagnostic, Severity, SourcePos } from "./types.ts";

/** A `key: value` pair of a mapping with its nodes, for precise positions. */
export interface MapEntry {
  key: string;
  keyNode: Node;
  /** null when the key has no value (`key:` alone). */
  value: Node | null;
}

export class YamlContext {
  readonly diagnostics: Diagnostic[] = [];
  private aliasResolutions = 0;
  /** Bytes of the nodes the aliases resolved to, summed (MAX_ALIAS_EXPANDED_BYTES). */
  private aliasBytes = 0;
  private aliasBudgetSpent = false;
  private errors = 0;

  constructor(
    readonly file: string,
    private readonly doc: Document,
    private readonly lineCounter: LineCounter,
  ) {}

  /** 1-based position of a byte offset in the text. */
  posAt(offset: number): SourcePos {
    const { line, col } = this.lineCounter.linePos(offset);
    return { line, col };
  }

  posOf(node: Node | null | undefined): SourcePos {
    return this.posAt(node?.range?.[0] ?? 0);
  }

  report(severity: Severity, node: Node | null | undefined, code: string, message: string): void {
    // Once the alias budget is spent, each alias left is a missing node: too-many-aliases said
    // why, once; not also "must be a mapping" for each of 10,000 `*r`.
    if (this.aliasBudgetSpent && code === "invalid-type") return;
    this.reportAt(severity, this.posOf(node), code, message);
  }

  reportAt(severity: Severity, pos: SourcePos, code: string, message: string): void {
    if (severity === "error") this.errors++;
    this.diagnostics.push({ severity, file: this.file, line: pos.line, col: pos.col, message, code });
  }

  error(node: Node | null | undefined, code: string, message: string): void {
    this.report("error", node, code, message);
  }

  warn(node: Node | null | undefined, code: string, message: string): void {
    this.report("warning", node, code, message);
  }

  get errorCount(): number {
    return this.errors;
  }

  /** Follows aliases (within budget); null for a missing node or an exhausted budget. */
  deref(node: unknown): Node | null {
    let current: unknown = node;
    while (isAlias(current)) {
      this.aliasResolutions++;
      if (this.aliasBudgetSpent || this.aliasResolutions > MAX_ALIAS_RESOLUTIONS) {
        if (!this.aliasBudgetSpent) this.error(current, "too-many-aliases", `more than ${MAX_ALIAS_RESOLUTIONS} alias references; expand them`);
        this.aliasBudgetSpent = true;
        return null;
      }
      const target = current.resolve(this.doc);
      const range = (target as Node | undefined)?.range;
      this.aliasBytes += range ? Math.max(1, range[2] - range[0]) : 1;
      if (this.aliasBytes > MAX_ALIAS_EXPANDED_BYTES) {
        this.error(current, "too-many-aliases", `aliases repeat more than ${MAX_ALIAS_EXPANDED_BYTES.toLocaleString("en-US")} bytes of the file in all; write the rules out instead`);
        this.aliasBudgetSpent = true;
        return null;
      }
      if (target === undefined) {
        // The yaml library leaves an alias without an earlier anchor unresolved, with no error:
        // skipped silently, it dropped a forward_to target or turned into "missing forward_to".
        this.error(current, "unknown-alias", `alias *${current.source} names no anchor before it: define &${current.source} earlier in the file, or write the value out`);
        return null;
      }
      current = target;
    }
    if (current === null || current === undefined) return null;
    return current as Node;
  }

  /** The entries of a mapping node; reports (and skips) non-scalar or unknown keys. */
  entries(map: YAMLMap, allowed: readonly string[], where: string): MapEntry[] {
    const result: MapEntry[] = [];
    for (const pair of map.items) {
      const keyNode = this.deref(pair.key);
      // Under a `%YAML 1.1` directive the library reads `<<` as its merge-key symbol, not text.
      const merge = isScalar(keyNode) && typeof keyNode.value === "symbol" && keyNode.value.description === "<<";
      if (!merge && (!isScalar(keyNode) || typeof keyNode.value !== "string")) {
        this.error(keyNode ?? map, "invalid-key", `keys of ${where} must be plain words`);
        continue;
      }
      const key = merge ? "<<" : String(keyNode.value);
      if (key === "<<") {
        // YAML 1.1 merge keys are not part of YAML 1.2, which the rules are read as.
        this.error(keyNode, "unknown-key", `YAML merge keys ('<<: *anchor') are not supported in ${where}: write the keys out in each one`);
        continue;
      }
      if (!allowed.includes(key)) {
        this.error(keyNode, "unknown-key", `unknown key ${quoted(key)} in ${where}${suggestion(key, allowed)}; allowed: ${oneOf(allowed)}`);
        continue;
      }
      result.push({ key, keyNode, value: this.deref(pair.value) });
    }
    return result;
  }

  asMap(node: Node | null, what: string, at: Node | null): YAMLMap | null {
    if (isMap(node)) return node;
    this.error(node ?? at, "invalid-type", `${what} must be a mapping (key: value)`);
    return null;
  }

  asSeq(node: Node | null, what: string, at: Node | null): YAMLSeq | null {
    if (isSeq(node)) return node;
    this.error(node ?? at, "invalid-type", `${what} must be a list`);
    return null;
  }

  /** A scalar's value, or null after reporting that `what` must be a single value. */
  scalar(node: Node | null, what: string, at: Node | null): Scalar | null {
    if (isScalar(node) && node.value !== null) return node;
    this.error(node ?? at, "invalid-type", `${what} must be a single value`);
    return null;
  }

  /** Text of a scalar: strings as is, other plain scalars as written (`010`, `1.0`, `true`). */
  text(node: Scalar): string {
    if (typeof node.value === "string") return node.value;
    return node.source ?? String(node.value);
  }

  /** A string-valued scalar (numbers and booleans as written), or null after an error. */
  string(node: Node | null, what: string, at: Node | null): string | null {
    const scalar = this.scalar(node, what, at);
    return scalar === null ? null : this.text(scalar);
  }

  boolean(node: Node | null, what: string, at: Node | null): boolean | null {
    if (isScalar(node) && typeof node.value === "boolean") return node.value;
    this.error(node ?? at, "invalid-type", `${what} must be true or false`);
    return null;
  }

  /** The items of a list, or the single value as a one-item list. */
  scalarList(node: Node | null): Node[] {
    if (isSeq(node)) return node.items.map((item) => this.deref(item)).filter((item): item is Node => item !== null);
    return node === null ? [] : [node];
  }
}

export function entryMap(entries: readonly MapEntry[]): Map<string, MapEntry> {
  return new Map(entries.map((entry) => [entry.key, entry]));
}
