/**
 * A strict parser for the Prometheus text exposition (0.0.4) that /metrics emits, shared by the
 * in-process metrics tests and the real-Prometheus interop test: every sample must belong to a
 * family declared with # HELP and # TYPE (each once), labels and values must parse.
 */
import { expect } from "bun:test";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/** A strict parser for the subset of the 0.0.4 text format we emit; throws on any invalid line. */
export function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  expect(text.endsWith("\n")).toBe(true);
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: Sample[] = [];
  for (const line of text.slice(0, -1).split("\n")) {
    let m: RegExpExecArray | null;
    if ((m = /^# HELP (\S+) (.+)$/.exec(line))) {
      expect(m[1]).toMatch(NAME);
      expect(helps.has(m[1] ?? "")).toBe(false);
      helps.add(m[1] ?? "");
    } else if ((m = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      expect(types.has(m[1] ?? "")).toBe(false);
      expect(helps.has(m[1] ?? "")).toBe(true);
      types.set(m[1] ?? "", m[2] ?? "");
    } else if ((m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line))) {
      const name = m[1] ?? "";
      const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, "");
      if (!types.has(family)) throw new Error(`sample without # TYPE: ${line}`);
      const labels: Record<string, string> = {};
      const body = m[2] ?? "";
      const labelRe = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(,|$)/y;
      let pos = 0;
      while (pos < body.length) {
        labelRe.lastIndex = pos;
        const l = labelRe.exec(body);
        if (!l) throw new Error(`bad labels at ${pos}: ${line}`);
        labels[l[1] ?? ""] = (l[2] ?? "").replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c));
        pos = labelRe.lastIndex;
      }
      const raw = m[3] ?? "";
      const value = raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : Number(raw);
      if (raw !== "NaN" && Number.isNaN(value)) throw new Error(`bad value: ${line}`);
      samples.push({ name, labels, value });
    } else {
      throw new Error(`invalid exposition line: ${JSON.stringify(line)}`);
    }
  }
  return { samples, types };
}

export function find(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

/** One series as a string with its labels sorted (`job` and `instance`, which Prometheus adds, left out). */
export function seriesKey(name: string, labels: Record<string, string>): string {
  const pairs = Object.entries(labels)
    .filter(([k]) => k !== "job" && k !== "instance" && k !== "__name__")
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  return `${name}{${pairs.join(",")}}`;
}
