import { readFileSync } from "node:fs";
import path from "node:path";

/**
 * `npm ci` refuses a lock file in which a package's optional dependency has no entry. npm
 * leaves out platform packages its registry did not serve; `npm run lockfile` puts them back.
 */
describe("package-lock.json", () => {
  it("records every optional dependency, so `npm ci` accepts it on every platform (else: npm run lockfile)", () => {
    const lock = JSON.parse(readFileSync(path.join(__dirname, "../package-lock.json"), "utf8")) as {
      packages: Record<string, { optionalDependencies?: Record<string, string> }>;
    };
    const missing: string[] = [];
    for (const [location, entry] of Object.entries(lock.packages)) {
      for (const name of Object.keys(entry.optionalDependencies ?? {})) {
        const nested = `${location ? `${location}/` : ""}node_modules/${name}`;
        if (!lock.packages[`node_modules/${name}`] && !lock.packages[nested]) missing.push(`${name} (for ${location || "root"})`);
      }
    }
    expect(missing).toEqual([]);
  });
});
