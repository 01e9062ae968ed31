// Starts the bundled command line (builder.cjs, one CommonJS file: no ESM loader, one read) from
// V8's code cache (builder.cjs.cache, made by `npm run build` from a training run), so that V8
// neither parses the whole script nor compiles the functions a build runs. The cache is
// used only when it is at least as new as the script: V8 checks its version and flags, but of the
// source only its length. V8 refuses a cache made by another Node version, and then compiles
// as usual.
//
// builder.cjs is already wrapped as Node's CommonJS loader would wrap it: a function of
// (exports, require, module, __filename, __dirname), see scripts/bundle.mjs.
'use strict';
const { closeSync, fstatSync, openSync, readSync, renameSync, writeFileSync } = require('node:fs');
// The class of this module: the same as require('node:module'), which would also load the ESM
// loader and source-map modules that a bundled CommonJS script never uses.
const Module = module.constructor;
const { join } = require('node:path');
const vm = require('node:vm');

const script = join(__dirname, 'builder.cjs');
const cache = `${script}.cache`;
const argv = process.argv.slice(2);
const mod = new Module(script, module);
mod.filename = script;
if (process.env.BUILDER_DEBUG || argv.includes('--debug') || argv.includes('-D')) {
  // Compiled by Node's loader, so that stack traces go through the source map into src/ (a
  // script from vm has none). `return` hands the wrapped function out of the loader's wrapper.
  process.setSourceMapsEnabled(true);
  const { source } = readScript(false);
  mod._compile(`return ${source}`, script).call(mod.exports, mod.exports, Module.createRequire(script), mod, script, __dirname);
} else {
  run();
}

function run() {
  // `npm run build` only: the functions this run compiled become the cache.
  const out = process.env.BUILDER_CODE_CACHE_OUT;
  const { source, cachedData } = readScript(!out);
  const compiled = new vm.Script(source, { filename: script, cachedData });
  if (out) {
    process.on('exit', () => {
      writeFileSync(`${out}.tmp`, compiled.createCachedData());
      renameSync(`${out}.tmp`, out);
    });
  }
  compiled.runInThisContext().call(mod.exports, mod.exports, Module.createRequire(script), mod, script, __dirname);
}

/**
 * The script's text and, with `withCache`, its code cache if that is usable, read through one
 * buffer: the text is copied out of it into V8's heap before the cache is read into it. Each page
 * of fresh memory a process touches costs a page fault, a good part of its start-up.
 */
function readScript(withCache) {
  const scriptFd = openSync(script, 'r');
  let cacheFd;
  try {
    const scriptStat = fstatSync(scriptFd);
    let cacheSize = 0;
    if (withCache) {
      try {
        cacheFd = openSync(cache, 'r');
        const cacheStat = fstatSync(cacheFd);
        if (cacheStat.mtimeMs >= scriptStat.mtimeMs) cacheSize = cacheStat.size;
      } catch {
        // No cache: V8 compiles as it goes.
      }
    }
    const buffer = Buffer.allocUnsafeSlow(Math.max(scriptStat.size, cacheSize));
    // ASCII only (scripts/bundle.mjs sees to it): as Latin-1 it is one byte per character for V8.
    const source = buffer.toString('latin1', 0, readAll(scriptFd, buffer, scriptStat.size));
    const cachedData = cacheSize > 0 ? buffer.subarray(0, readAll(cacheFd, buffer, cacheSize)) : undefined;
    return { source, cachedData };
  } finally {
    closeSync(scriptFd);
    if (cacheFd !== undefined) closeSync(cacheFd);
  }
}

/** Reads up to `size` bytes of `fd` into the start of `buffer`; returns how many there were. */
function readAll(fd, buffer, size) {
  let done = 0;
  for (let n; done < size && (n = readSync(fd, buffer, done, size - done, done)) > 0; ) done += n;
  return done;
}
