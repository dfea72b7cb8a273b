/**
 * `npm run contracts:release`: records the contracts as they are now as the released ones
 * (packages/contracts/released, a copy of proto/). From then on `npm test` runs `buf breaking`
 * against them, so a change that would break a deployed client or service (a field renumbered
 * or removed, a type changed, an RPC gone) fails before it ships. Run it when a version of
 * the contracts is released; a deliberate break needs a new package version (v2), not a rerun.
 */
import { cpSync, rmSync } from "node:fs";
import path from "node:path";

const root = path.resolve(__dirname, "..");
const released = path.join(root, "packages/contracts/released");
rmSync(path.join(released, "tally"), { recursive: true, force: true });
cpSync(path.join(root, "proto/tally"), path.join(released, "tally"), { recursive: true });
cpSync(path.join(root, "proto/buf.yaml"), path.join(released, "buf.yaml"));
console.log(`released contracts recorded in ${path.relative(root, released)}`);
