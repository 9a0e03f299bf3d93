/**
 * Which message facts a compiled RuleSet can read, so the SMTP hot path parses only what
 * some rule looks at: the MIME body (body text, attachment names and types) and the
 * SPF/DKIM/DMARC checks cost far more than the header block, and the starter rules
 * read nothing but the subject. Header fields, envelope fields and size are always cheap
 * and always available. Pure; computed once per RuleSet (cached by identity).
 */
import type { FieldName, RuleSet } from "./types.ts";

export interface FactNeeds {
  /** Some rule reads `body`, `attachment` or `attachment_type`: the MIME body must be parsed. */
  readonly content: boolean;
  /** Some rule reads `spf`, `dkim` or `dmarc`: the authentication checks (DNS) must run. */
  readonly auth: boolean;
}

const CONTENT_FIELDS: ReadonlySet<FieldName> = new Set<FieldName>(["body", "attachment", "attachment_type"]);
const AUTH_FIELDS: ReadonlySet<FieldName> = new Set<FieldName>(["spf", "dkim", "dmarc"]);

const cache = new WeakMap<RuleSet, FactNeeds>();

/** The facts any rule of `ruleSet` reads (the default decision reads none). */
export function factNeeds(ruleSet: RuleSet): FactNeeds {
  let needs = cache.get(ruleSet);
  if (needs === undefined) {
    const fields = ruleSet.rules.flatMap((rule) => rule.conditions.map((condition) => condition.field));
    needs = Object.freeze({
      content: fields.some((field) => CONTENT_FIELDS.has(field)),
      auth: fields.some((field) => AUTH_FIELDS.has(field)),
    });
    cache.set(ruleSet, needs);
  }
  return needs;
}
