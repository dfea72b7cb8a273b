/**
 * The project's shape, held by a test: the three services share one layout and one set of file
 * names, the ORM stays inside the adapters, functions and files stay short enough to read at
 * once, and nothing points at documents outside the repository.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import {
  checkedFiles,
  FILE_LINES_MAX,
  fileLines,
  FUNCTION_LINES_MAX,
  functionLengths,
  importsOf,
  REPOSITORY_ROOT,
  typeScriptFiles,
} from "../scripts/shape";

const SERVICES = ["credits", "generations", "usage"] as const;

/** Folders every service's src/ has, and the only ones (generations adds its providers). */
const SERVICE_FOLDERS = ["adapter", "domain", "grpc", "runners", "service"];
const EXTRA_FOLDERS: Record<string, string[]> = { generations: ["providers"] };

/** Files every service has, by role. */
const SERVICE_FILES = [
  "app.ts",
  "config.ts",
  "domain/types.ts",
  "domain/inputs.ts",
  "domain/ports.ts",
  "adapter/unit-of-work.ts",
  "adapter/migrations/index.ts",
  "grpc/handlers.ts",
  "grpc/mapping.ts",
];

const folders = (dir: string) => readdirSync(dir).filter((name) => statSync(path.join(dir, name)).isDirectory()).sort();

describe("the shape of the code", () => {
  it.each(SERVICES)("%s has the common folders and files", (service) => {
    const src = path.join(REPOSITORY_ROOT, "services", service, "src");
    expect(folders(src)).toEqual([...SERVICE_FOLDERS, ...(EXTRA_FOLDERS[service] ?? [])].sort());
    for (const file of SERVICE_FILES) expect({ file, exists: existsSync(path.join(src, file)) }).toEqual({ file, exists: true });
    const stores = readdirSync(path.join(src, "adapter")).filter((name) => name.endsWith("-store.ts"));
    expect(stores.length).toBeGreaterThan(0);
  });

  it("keeps MikroORM inside the adapters (and the platform's database bootstrap)", () => {
    const roots = [...SERVICES.map((s) => `services/${s}/src`), "gateway/src"];
    const leaks = roots
      .flatMap(typeScriptFiles)
      .filter((file) => !file.includes("/adapter/"))
      .filter((file) => importsOf(file).some((specifier) => specifier.startsWith("@mikro-orm/")));
    expect(leaks).toEqual([]);
  });

  it("keeps the gateway off the database and broker modules (it imports only the platform's stateless entry)", () => {
    const heavy = /^(@mikro-orm\/|knex$|pg$|@nats-io\/)/;
    const gatewayLeaks = typeScriptFiles("gateway/src").filter((file) =>
      importsOf(file).some((specifier) => heavy.test(specifier) || specifier === "@tally/platform" || (specifier.startsWith("@tally/platform/") && !specifier.endsWith("/stateless"))),
    );
    expect(gatewayLeaks).toEqual([]);
    // Every platform module the stateless entry reaches, through relative imports at any depth.
    const reached = new Set<string>();
    const visit = (file: string): void => {
      if (reached.has(file)) return;
      reached.add(file);
      for (const specifier of importsOf(file).filter((s) => s.startsWith("./"))) visit(path.join(path.dirname(file), `${specifier}.ts`));
    };
    visit("packages/platform/src/stateless.ts");
    expect(reached.size).toBeGreaterThan(10);
    expect([...reached].filter((file) => importsOf(file).some((specifier) => heavy.test(specifier)))).toEqual([]);
  });

  it("keeps proto types out of the domain and service layers", () => {
    const layers = SERVICES.flatMap((s) => [`services/${s}/src/domain`, `services/${s}/src/service`]);
    const leaks = layers
      .flatMap(typeScriptFiles)
      .filter((file) => importsOf(file).some((specifier) => specifier === "@tally/contracts" || specifier.includes("/grpc/") || specifier.includes("/adapter/")));
    expect(leaks).toEqual([]);
    const handlerLeaks = SERVICES.flatMap((s) => typeScriptFiles(`services/${s}/src/grpc`)).filter((file) =>
      importsOf(file).some((specifier) => specifier.includes("/adapter/")),
    );
    expect(handlerLeaks).toEqual([]);
  });

  it(`has no function over ${FUNCTION_LINES_MAX} lines outside migrations and tests`, () => {
    const long = checkedFiles()
      .flatMap(functionLengths)
      .filter((f) => f.lines > FUNCTION_LINES_MAX)
      .map((f) => `${f.file}:${f.line} ${f.name} (${f.lines} lines)`);
    expect(long).toEqual([]);
  });

  it(`has no source file over ${FILE_LINES_MAX} lines outside migrations and tests`, () => {
    const long = checkedFiles()
      .map((file) => ({ file, lines: fileLines(file) }))
      .filter((f) => f.lines > FILE_LINES_MAX);
    expect(long).toEqual([]);
  });

  it("refers to no document outside the repository", () => {
    // Built from parts so that this file does not match itself.
    const outside = new RegExp(["\\.\\./" + "shared", "DESIGN" + "\\.md", "seed " + "0\\d\\d", "(?<!docs/)API" + "\\.md"].join("|"));
    const roots = [".", "docs", "proto", "deploy", "bench", "scripts", "test", "packages/platform", "gateway", ...SERVICES.map((s) => `services/${s}`)];
    const files = new Set<string>();
    for (const root of roots) {
      const dir = path.join(REPOSITORY_ROOT, root);
      if (!existsSync(dir)) continue;
      const walk = (current: string, depth: number) => {
        for (const name of readdirSync(current)) {
          if (name === "node_modules" || name.startsWith(".")) continue;
          const full = path.join(current, name);
          if (statSync(full).isDirectory()) {
            if (depth > 0) walk(full, depth - 1);
          } else if (/\.(ts|md|proto|ya?ml)$/.test(name)) files.add(path.relative(REPOSITORY_ROOT, full));
        }
      };
      walk(dir, root === "." ? 0 : 8);
    }
    const hits = [...files].flatMap((file) =>
      readFileSync(path.join(REPOSITORY_ROOT, file), "utf8")
        .split("\n")
        .flatMap((line, index) => (outside.test(line) ? [`${file}:${index + 1}: ${line.trim()}`] : [])),
    );
    expect(hits).toEqual([]);
  });
});
