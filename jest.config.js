/** Jest runs TypeScript through SWC (no type checking here: `npm run lint` runs tsc). */
const swc = ["@swc/jest", { jsc: { parser: { syntax: "typescript" }, target: "es2022" }, module: { type: "commonjs" } }];

/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: "node",
  testMatch: ["<rootDir>/**/test/**/*.test.ts", "<rootDir>/**/src/**/*.test.ts"],
  testPathIgnorePatterns: ["/node_modules/"],
  transform: { "^.+\\.(t|j)sx?$": swc, "^.+\\.mjs$": swc },
  // jose, content-disposition (@fastify/static, under swagger-ui) and cookie (light-my-request,
  // behind Fastify's inject), p-limit and its yocto-queue (credits' password pool) ship only ES
  // modules; let SWC turn them into CommonJS for Jest.
  transformIgnorePatterns: ["/node_modules/(?!(jose|content-disposition|cookie|p-limit|yocto-queue)/)"],
  testTimeout: 60_000,
};
