// Starts the bundled command line (builder.cjs, one CommonJS file: no ESM loader, one read) from
// V8's code cache (builder.cjs.cache, made by `npm run build` from a training run), so that V8
// neither parses the whole script nor compiles the functions a build runs. The cache is
// used only when it is at least as new as the script: V8 checks its version and flags, but of the
// source only its length. V8 refuses a cache made by another Node version, and then compiles
// as usual.
'use strict';
const { readFileSync, renameSync, statSync, writeFileSync } = require('node:fs');
// The class of this module: the same as require('node:module'), which would also load the ESM
// loader and source-map modules that a bundled CommonJS script never uses.
const Module = module.constructor;
const { join } = require('node:path');
const vm = require('node:vm');

const script = join(__dirname, 'builder.cjs');
const cache = `${script}.cache`;
const argv = process.argv.slice(2);
if (process.env.BUILDER_DEBUG || argv.includes('--debug') || argv.includes('-D')) {
  // Stack traces through the source map point into src/ (a script from vm has none).
  process.setSourceMapsEnabled(true);
  require(script);
} else {
  run();
}

function run() {
  // ASCII only (scripts/bundle.mjs sees to it): as Latin-1 it is one byte per character for V8.
  const source = readFileSync(script, 'latin1');
  const compiled = new vm.Script(Module.wrap(source), { filename: script, cachedData: cachedData() });
  // `npm run build` only: the functions this run compiled become the cache.
  const out = process.env.BUILDER_CODE_CACHE_OUT;
  if (out) {
    process.on('exit', () => {
      writeFileSync(`${out}.tmp`, compiled.createCachedData());
      renameSync(`${out}.tmp`, out);
    });
  }
  const mod = new Module(script, module);
  mod.filename = script;
  compiled.runInThisContext().call(mod.exports, mod.exports, Module.createRequire(script), mod, script, __dirname);
}

function cachedData() {
  if (process.env.BUILDER_CODE_CACHE_OUT) return undefined;
  try {
    if (statSync(cache).mtimeMs < statSync(script).mtimeMs) return undefined;
    return readFileSync(cache);
  } catch {
    return undefined;
  }
}
