/**
 * Measures the code's shape: the length of every function and file, and where each module
 * imports from. `test/shape.test.ts` holds the project to its limits with it, and
 * `node --import tsx scripts/shape.ts` prints the longest functions and files.
 *
 * A function is every function declaration, method, constructor, accessor, function
 * expression and arrow function; its length is the number of lines from its first to its last
 * character, so a nested function counts inside its parent too.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import ts from "typescript";

export const REPOSITORY_ROOT = path.resolve(__dirname, "..");

/** Longest function allowed outside migrations and tests, in lines. */
export const FUNCTION_LINES_MAX = 70;
/** Longest source file allowed outside migrations and tests, in lines. */
export const FILE_LINES_MAX = 400;

/** Folders the shape rules apply to: the product's own source, not tests or generated code. */
export const SOURCE_ROOTS = ["services/credits/src", "services/generations/src", "services/usage/src", "gateway/src", "packages/platform/src", "scripts", "bench"];

/** True for files the limits do not apply to: tests, migrations (long DDL by nature) and generated code. */
export function isExempt(file: string): boolean {
  return /\.test\.ts$/.test(file) || /\/migrations\//.test(file) || /\/gen\//.test(file);
}

/** Every `.ts` file under `root` (relative to the repository), skipping node_modules. */
export function typeScriptFiles(root: string): string[] {
  const absolute = path.join(REPOSITORY_ROOT, root);
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      if (name === "node_modules") continue;
      const full = path.join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith(".ts")) found.push(path.relative(REPOSITORY_ROOT, full));
    }
  };
  walk(absolute);
  return found.sort();
}

export interface FunctionLength {
  file: string;
  /** 1-based line of the function's start. */
  line: number;
  name: string;
  lines: number;
}

function functionName(node: ts.Node, source: ts.SourceFile): string {
  const named = node as { name?: ts.Node };
  if (named.name) return named.name.getText(source);
  if (ts.isConstructorDeclaration(node)) return "constructor";
  const parent = node.parent;
  if (parent && ts.isVariableDeclaration(parent)) return parent.name.getText(source);
  if (parent && ts.isPropertyAssignment(parent)) return parent.name.getText(source);
  if (parent && ts.isCallExpression(parent)) return `(callback of ${parent.expression.getText(source).slice(0, 40)})`;
  return "(anonymous)";
}

/** The length of every function in `file` (relative to the repository). */
export function functionLengths(file: string): FunctionLength[] {
  const text = readFileSync(path.join(REPOSITORY_ROOT, file), "utf8");
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const lengths: FunctionLength[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isFunctionLike(node) && (node as { body?: ts.Node }).body) {
      const start = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const end = source.getLineAndCharacterOfPosition(node.getEnd()).line;
      lengths.push({ file, line: start + 1, name: functionName(node, source), lines: end - start + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return lengths;
}

/** Lines in a file. */
export const fileLines = (file: string): number => readFileSync(path.join(REPOSITORY_ROOT, file), "utf8").split("\n").length;

/** Module specifiers a file imports or re-exports (static and dynamic). */
export function importsOf(file: string): string[] {
  const text = readFileSync(path.join(REPOSITORY_ROOT, file), "utf8");
  return [...text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)["']([^"']+)["']/g)].map((match) => match[1]!);
}

/** The files the limits apply to. */
export const checkedFiles = (): string[] => SOURCE_ROOTS.flatMap(typeScriptFiles).filter((file) => !isExempt(file));

if (require.main === module) {
  const functions = checkedFiles().flatMap(functionLengths).sort((a, b) => b.lines - a.lines);
  process.stdout.write(`longest functions (limit ${FUNCTION_LINES_MAX} lines):\n`);
  for (const f of functions.slice(0, 10)) process.stdout.write(`  ${String(f.lines).padStart(4)}  ${f.file}:${f.line} ${f.name}\n`);
  const files = checkedFiles().map((file) => ({ file, lines: fileLines(file) })).sort((a, b) => b.lines - a.lines);
  process.stdout.write(`longest files (limit ${FILE_LINES_MAX} lines):\n`);
  for (const f of files.slice(0, 5)) process.stdout.write(`  ${String(f.lines).padStart(4)}  ${f.file}\n`);
}
