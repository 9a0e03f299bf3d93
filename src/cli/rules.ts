/**
 * `mailgw rules lint|list|add` (SPEC §1): wiring between citty and src/rules/.
 * lint: exit 0 no errors (warnings allowed), 1 errors, 2 a file unreadable.
 * list: rules in evaluation order, one line each; exit 1 if the file does not load.
 * add:  appends a rule keeping the file's bytes, validated by the same lint; refused
 *       (exit 1, file untouched) if the result would not lint; atomic write otherwise.
 */
import { existsSync } from "node:fs";
import { defineCommand } from "citty";
import { resolveRawValues } from "../config/config.ts";
import { CliError, describeError } from "../errors.ts";
import { addRuleToText, type NewRule } from "../rules/add.ts";
import { writeFileAtomic } from "../rules/atomic-write.ts";
import { withFileLock } from "../rules/file-lock.ts";
import { alignColumns, ruleRows } from "../rules/describe.ts";
import { formatDiagnosticLine, formatDiagnostics, LINT_FORMATS, type LintFormat, lintExitCode } from "../rules/format.ts";
import { loadRules, readRulesFile } from "../rules/load.ts";
import type { Diagnostic } from "../rules/types.ts";
import { cliAction } from "./action.ts";
import { repeatedFlag } from "./argv.ts";

const DEFAULT_RULES_FILE = "rules.yaml";

/**
 * The file serve would load: RULES_FILE (environment or .env, as `mailgw test` and serve read
 * it), else ./rules.yaml. A lint in CI or by hand checks the gateway's file, not a stray one.
 */
function defaultRulesFile(): string {
  const configured = resolveRawValues().get("RULES_FILE");
  // The variable's default is ./rules.yaml; named as before, `rules.yaml:3:5` (GitHub annotations' form).
  return !configured || configured === `./${DEFAULT_RULES_FILE}` ? DEFAULT_RULES_FILE : configured;
}

function printDiagnostics(diagnostics: readonly Diagnostic[], stream: NodeJS.WriteStream): void {
  for (const d of diagnostics) stream.write(`${formatDiagnosticLine(d)}\n`);
}

const lint = defineCommand({
  meta: { name: "lint", description: "Validate rules files without starting anything (exit 0 ok, 1 errors, 2 unreadable)" },
  args: {
    files: { type: "positional", required: false, valueHint: "FILE...", description: `Rules files (default: RULES_FILE, else ./${DEFAULT_RULES_FILE})` },
    format: { type: "enum", options: [...LINT_FORMATS], default: "text", description: "Output: text, json or github (annotations)" },
  },
  run: cliAction(async (args: { _: string[]; format: string }) => {
    const files = args._.length > 0 ? args._ : [defaultRulesFile()];
    const diagnostics: Diagnostic[] = [];
    for (const file of files) diagnostics.push(...(await loadRules(file)).diagnostics);
    process.stdout.write(formatDiagnostics(args.format as LintFormat, diagnostics, files.length));
    return lintExitCode(diagnostics);
  }),
});

const list = defineCommand({
  meta: { name: "list", description: "Show the rules in evaluation order: priority, name, action, category, targets, conditions" },
  args: {
    file: { type: "positional", required: false, valueHint: "FILE", description: `Rules file (default: RULES_FILE, else ./${DEFAULT_RULES_FILE})` },
  },
  run: cliAction(async (args: { file?: string }) => {
    const file = args.file ?? defaultRulesFile();
    const result = await loadRules(file);
    printDiagnostics(result.diagnostics, process.stderr);
    if (!result.ok) throw new CliError(`${file} has errors; fix them (mailgw rules lint ${file}) and retry`);
    process.stdout.write(alignColumns(ruleRows(result.rules)));
  }),
});

interface AddArgs {
  name: string;
  action: string;
  priority?: string;
  category?: string;
  url?: string;
  "reject-message"?: string;
  archive?: boolean;
  "loop-ok"?: boolean;
  conditions: string;
  file?: string;
}

function parseConditions(json: string): unknown {
  try {
    return JSON.parse(json);
  } catch (err) {
    throw new CliError(`--conditions is not valid JSON (${describeError(err)}); e.g. '[{"field":"subject","operator":"contains","value":"invoice"}]'`);
  }
}

/**
 * The file `rules add` changes, as strict UTF-8. A missing file is refused rather than created:
 * a typo in --file (or the wrong directory) would otherwise add the rule to a stray new file
 * while the gateway's rules stay as they were.
 */
async function readExisting(file: string): Promise<string> {
  const read = await readRulesFile(file);
  if (read.ok) return read.text;
  if (!existsSync(file)) throw new CliError(`${file} does not exist; nothing written (give the gateway's rules file with --file)`);
  throw new CliError(`${file}: ${read.diagnostic.message}; nothing written`);
}

async function addRule(args: AddArgs, rawArgs: readonly string[]): Promise<void> {
  const forwardTo = repeatedFlag(rawArgs, ["forward-to", "forwardTo"]).flatMap((v) => v.split(",").map((a) => a.trim()).filter((a) => a !== ""));
  const rule: NewRule = { name: args.name, action: args.action, conditions: parseConditions(args.conditions), forwardTo };
  if (args.priority !== undefined) rule.priority = args.priority;
  if (args.category !== undefined) rule.category = args.category;
  if (args.url !== undefined) rule.url = args.url;
  if (args["reject-message"] !== undefined) rule.rejectMessage = args["reject-message"];
  if (args.archive === true) rule.archive = true;
  if (args["loop-ok"] === true) rule.loopOk = true;
  const file = args.file ?? defaultRulesFile();
  // Read and written under one lock: two adds at once each kept only their own rule.
  await withFileLock(file, async () => {
    const before = await readExisting(file);
    const result = addRuleToText(before, file, rule);
    printDiagnostics(result.diagnostics, process.stderr);
    if (!result.ok) throw new CliError(`rule '${args.name}' not added: ${file} would not lint (positions above are in the file with the rule appended); file unchanged`);
    await writeFileAtomic(file, result.text);
  });
  process.stdout.write(`added rule '${args.name}' to ${file}\n`);
}

const add = defineCommand({
  meta: { name: "add", description: "Append a rule to rules.yaml (comments and formatting kept); refused if the result would not lint" },
  args: {
    name: { type: "positional", required: true, valueHint: "NAME", description: "Rule name: a-z, 0-9 and -" },
    action: { type: "string", required: true, valueHint: "reject|archive|forward|webhook|drop", description: "What the rule does" },
    priority: { type: "string", valueHint: "N", description: "Higher is evaluated first (default 0)" },
    category: { type: "string", valueHint: "C", description: "Category recorded for matching messages (default: the name)" },
    "forward-to": { type: "string", valueHint: "ADDR", description: "Forward target; repeat for several (action forward)" },
    url: { type: "string", valueHint: "URL", description: "Webhook target (action webhook)" },
    "reject-message": { type: "string", valueHint: "TEXT", description: "Text after 550 5.7.1 (action reject)" },
    archive: { type: "boolean", description: "Also archive (forward / webhook)" },
    "loop-ok": { type: "boolean", description: "Forward targets inside domains are meant (the relay delivers them elsewhere): no forward-loop warning" },
    conditions: { type: "string", required: true, valueHint: "JSON", description: 'List of conditions, e.g. \'[{"field":"subject","operator":"contains","value":"invoice"}]\'' },
    file: { type: "string", valueHint: "F", description: `Rules file to change (default: RULES_FILE, else ./${DEFAULT_RULES_FILE})` },
  },
  run: cliAction((args: AddArgs, rawArgs) => addRule(args, rawArgs)),
});

export default defineCommand({
  meta: { name: "rules", description: "Check, list and add classification rules (rules.yaml)" },
  subCommands: { lint, list, add },
});
