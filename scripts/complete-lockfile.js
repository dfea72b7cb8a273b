#!/usr/bin/env node
/**
 * `npm run lockfile`: records in package-lock.json the platform-specific optional packages
 * (e.g. `@swc/core-darwin-arm64`) that npm left out because the registry it resolved against
 * did not serve them (a mirror with Linux binaries only). Without their entries `npm ci`
 * refuses the lock file as out of sync, on every platform. Each added entry names its
 * version, `os`, `cpu` and `libc` (from the package name), so npm skips it on other platforms
 * and fetches it by name and version where it applies. Idempotent; run it after `npm install`.
 */
const fs = require("node:fs");
const path = require("node:path");

const lockPath = path.join(__dirname, "..", "package-lock.json");
const lock = JSON.parse(fs.readFileSync(lockPath, "utf8"));
const OSES = ["darwin", "linux", "win32", "android", "freebsd", "openbsd", "netbsd", "sunos", "aix", "openharmony"];
const CPUS = { arm64: "arm64", x64: "x64", ia32: "ia32", arm: "arm", armv7: "arm", ppc64: "ppc64", s390x: "s390x", riscv64: "riscv64", loong64: "loong64" };

/** `{os, cpu, libc}` from a platform package's name, or undefined when it names no platform. */
function platformOf(name) {
  const tokens = name.split("/").pop().split("-");
  const osIndex = tokens.findIndex((t) => OSES.includes(t));
  if (osIndex < 0) return undefined;
  const cpu = CPUS[tokens[osIndex + 1]];
  if (!cpu) return undefined;
  const rest = tokens.slice(osIndex + 2).join("-");
  const libc = tokens[osIndex] !== "linux" ? undefined : /musl/.test(rest) ? "musl" : /gnu/.test(rest) ? "glibc" : undefined;
  return { os: tokens[osIndex], cpu, libc };
}

let added = 0;
for (const [location, entry] of Object.entries(lock.packages)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const nested = `${location ? `${location}/` : ""}node_modules/${name}`;
    if (lock.packages[`node_modules/${name}`] || lock.packages[nested]) continue;
    const platform = platformOf(name);
    if (!platform || !/^\d+\.\d+\.\d+/.test(version)) {
      console.warn(`left out ${name}@${version} (not a platform package with an exact version)`);
      continue;
    }
    lock.packages[`node_modules/${name}`] = {
      version,
      ...(entry.dev ? { dev: true } : {}),
      optional: true,
      os: [platform.os],
      cpu: [platform.cpu],
      ...(platform.libc ? { libc: [platform.libc] } : {}),
    };
    added++;
  }
}
const sorted = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b))),
);
lock.packages = sorted;
fs.writeFileSync(lockPath, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`package-lock.json: recorded ${added} platform package(s)`);
