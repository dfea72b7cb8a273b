"use strict";
// Entry of a render-pool worker thread (see render-pool.ts). The threads start without the
// parent's loader flags, so this file loads the TypeScript task through tsx's own API: the
// same whether the service runs under `node --import tsx` or inside Jest.
const { require: tsxRequire } = require("tsx/cjs/api");

module.exports = tsxRequire("./render-task.ts", __filename);
