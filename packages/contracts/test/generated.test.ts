import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const root = path.resolve(__dirname, "../../..");
const committed = path.join(root, "packages/contracts/src/gen");

function listFiles(dir: string, prefix = ""): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? listFiles(full, `${prefix}${name}/`) : [`${prefix}${name}`];
  });
}

describe("generated contracts", () => {
  it("match what `npm run gen` produces from proto/ (run it and commit the output)", () => {
    const out = mkdtempSync(path.join(os.tmpdir(), "tally-gen-"));
    try {
      execFileSync(path.join(root, "node_modules/.bin/buf"), ["generate", "proto", "-o", out], {
        cwd: root,
        env: { ...process.env, PATH: `${path.join(root, "node_modules/.bin")}:${process.env.PATH}` },
      });
      const fresh = path.join(out, "packages/contracts/src/gen");
      const files = listFiles(fresh).sort();
      expect(listFiles(committed).sort()).toEqual(files);
      for (const file of files) {
        expect({ file, content: readFileSync(path.join(committed, file), "utf8") }).toEqual({
          file,
          content: readFileSync(path.join(fresh, file), "utf8"),
        });
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
