/**
 * Public interface of the rules engine (SPEC §3). Other stages import from here:
 *   loadRules / parseRules / lintRules  — file → RuleSet or diagnostics (one validation path)
 *   classify                            — facts + RuleSet → decision + trace (pure, hot path)
 *   formatDiagnostics / lintExitCode    — lint output
 */
export { addRuleToText, type AddResult, type NewRule } from "./add.ts";
export { writeFileAtomic } from "./atomic-write.ts";
export { classify } from "./classify.ts";
export { factNeeds, type FactNeeds } from "./fact-needs.ts";
export { describeCondition, describeConditions, describeTargets, ruleRows } from "./describe.ts";
export { formatDiagnostics, LINT_FORMATS, lintExitCode, type LintFormat, summarize } from "./format.ts";
export { lintRules, loadRules, parseRules, readRulesFile, rulesVersion, UNREADABLE_CODE } from "./load.ts";
export { syntheticRulesYaml } from "./synthetic.ts";
export type * from "./types.ts";
