// Bundles the CLI (after tsc) into one CommonJS file, dist/cli-bundle/builder.cjs, and makes V8's
// code cache for it. Start-up is most of a cached build or a dry run: one file spares the ESM
// loader's resolution, reads and linking of many, and the code cache spares parsing and compiling.
// Modules behind dynamic imports (the build machinery, the registry client, login) are still
// evaluated only when a command needs them.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';

const OUT = 'dist/cli-bundle';
// What Node's CommonJS loader wraps a module's code in (its Module.wrapper): the parameters are
// what scripts/cli-start.cjs passes.
const MODULE_WRAPPER = ['(function (exports, require, module, __filename, __dirname) { ', '\n})'];
const SCRIPT = join(OUT, 'builder.cjs');

/**
 * Node's built-in modules that the CLI bundle loads when one of their exports is first used, not
 * when a module importing them is evaluated. A fully cached build evaluates the executor, the
 * snapshotter and the layer code without running any of it; loading child_process (and with it
 * net and dgram), tty, worker_threads, zlib and module (and with it the ESM loader) for them was a
 * good part of its start-up, and so were fs/promises (and with it readline), http, https and tls.
 * A module that defines a class extending one of these exports (a Transform) loads it all the
 * same; so does crypto, for streams.
 */
const LAZY_BUILTINS = ['child_process', 'fs/promises', 'http', 'https', 'module', 'net', 'readline/promises', 'stream', 'stream/promises', 'string_decoder', 'timers/promises', 'tls', 'tty', 'v8', 'worker_threads', 'zlib'];

rmSync(OUT, { recursive: true, force: true });
await build({
  entryPoints: ['dist/cli/main.js'],
  outfile: SCRIPT,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  // Loaded from node_modules as they are: a native addon, and ssh2 whose optional native
  // addons (tried at load) esbuild cannot bundle.
  external: ['fs-xattr', 'ssh2'],
  // import() of those becomes require(): a script compiled through vm has no ESM loader.
  supported: { 'dynamic-import': false },
  // The script's URL is made when a module asks for it, not at every start: the first URL made
  // costs a fully cached build about 2 ms, and it has no other use for one.
  define: { 'import.meta.url': '__builder.scriptUrl' },
  // The script is the function that Node's module wrapper would make of it (scripts/cli-start.cjs
  // calls it): the starter compiles it as it is, where wrapping it in a string of its
  // own would copy the whole script once more at every start. The prefix stays on line 1, so the
  // source map's lines hold.
  banner: { js: `${MODULE_WRAPPER[0]}const __builder = { get scriptUrl() { return require('node:url').pathToFileURL(__filename).href; } }; require = (${oneLine(lazyRequire)})(require, ${JSON.stringify(LAZY_BUILTINS)});` },
  footer: { js: MODULE_WRAPPER[1] },
  // Minified, local names too: a third less script for every start to read and copy into V8's
  // heap, and a smaller code cache. Stack traces (--debug) still point into src/ through the
  // source map, with the minified names of functions and classes.
  minify: true,
  sourcemap: true,
  logLevel: 'warning',
});
asciiOnly(SCRIPT);
copyFileSync('scripts/cli-start.cjs', join(OUT, 'start.cjs'));
// The layer writer's thread script, one file beside the CLI bundle (src/snapshotter/layer-writer.ts
// looks for it there): a new thread loads it faster than the modules it is made of.
await build({
  entryPoints: ['dist/snapshotter/apply-worker.js'],
  outfile: join(OUT, 'apply-worker.cjs'),
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  external: ['fs-xattr'],
  define: { 'import.meta.url': '__builderScriptUrl' },
  // The thread's start delays a large layer's first entries: what only whiteouts (crypto), xattrs
  // (module) and special files (child_process) need loads when one comes.
  banner: { js: `const __builderScriptUrl = require('node:url').pathToFileURL(__filename).href; require = (${oneLine(lazyRequire)})(require, ${JSON.stringify(['child_process', 'crypto', 'module'])});` },
  minifyWhitespace: true,
  logLevel: 'warning',
});
train();

/**
 * The bundle's `require`, for the built-ins `names` (with or without `node:`) a stand-in that
 * loads the module at its first use. esbuild leaves built-ins external and reads an import's
 * exports at each use (`(0, import_node_net.connect)(...)`), so a proxy's `get` is that first use;
 * a bundled module of getters instead costs esbuild's import wrapper a getter per export name,
 * several hundred in all, at every start. Runs at the top of the bundle (see its banner), from its
 * source text: it must stand alone.
 */
function lazyRequire(require, names) {
  const lazy = new Set(names.flatMap((name) => [name, `node:${name}`]));
  const standIns = new Map();
  const standIn = (id) => {
    let loaded;
    const load = () => (loaded ??= require(id));
    return new Proxy({}, {
      get: (_, key) => load()[key],
      set: (_, key, value) => Reflect.set(load(), key, value),
      has: (_, key) => key in load(),
      ownKeys: () => Reflect.ownKeys(load()),
      getOwnPropertyDescriptor: (_, key) => {
        const found = Reflect.getOwnPropertyDescriptor(load(), key);
        return found && { ...found, configurable: true };
      },
    });
  };
  const lazyOrNow = (id) => {
    if (!lazy.has(id)) return require(id);
    if (!standIns.has(id)) standIns.set(id, standIn(id));
    return standIns.get(id);
  };
  return Object.assign(lazyOrNow, require);
}

/** A function's source on one line (the banner's, where the source map expects one line). */
function oneLine(fn) {
  const text = fn.toString();
  if (text.includes('//')) throw new Error(`${fn.name}: a line comment would swallow the rest of the line`);
  return text.replace(/\s*\n\s*/g, ' ');
}

/**
 * Escapes what esbuild leaves outside ASCII (it keeps regular expressions as they are, e.g. /µs/),
 * so that the starter can read the script as Latin-1: V8 then holds it as one byte per character
 * and reads it and its code cache faster. Each UTF-16 unit becomes a \uXXXX escape, which means
 * the same in strings, templates and regular expressions (a surrogate pair too, with the u flag).
 * The columns of the source map after such a character shift by a few places; lines stay right.
 */
function asciiOnly(file) {
  const text = readFileSync(file, 'utf8');
  const escaped = text.replace(/[^\0-\x7f]/g, (unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (escaped !== text) writeFileSync(file, escaped);
}

/**
 * Runs bin/builder (the same Node flags as every later run: V8 refuses a cache made under others)
 * on what a build does most: a fully cached build of a small two-stage image on a base from the
 * local store (WORKDIR, COPY, COPY --from, ENV, CMD), in a throwaway state directory. The code
 * cache it writes holds every function that run compiled; a build that runs other code compiles
 * that as it goes. Without a cache (a build that cannot run here), builder works as well, only
 * starts slower.
 */
function train() {
  const dir = mkdtempSync(join(tmpdir(), 'builder-bundle-'));
  try {
    const context = join(dir, 'context');
    mkdirSync(context);
    writeFileSync(join(context, 'hello.txt'), 'hello\n');
    writeFileSync(join(context, 'Dockerfile.base'), 'FROM scratch\nCOPY hello.txt /\n');
    writeFileSync(
      join(context, 'Dockerfile'),
      'FROM bundle-training-base:1 AS build\nWORKDIR /src\nCOPY hello.txt .\n\nFROM bundle-training-base:1\nCOPY --from=build /src/hello.txt /copy.txt\nENV GREETING=hello\nCMD ["cat", "/copy.txt"]\n',
    );
    const build = (args, extraEnv = {}) => {
      // Under --debug the starter loads the script without the cache, and would make none.
      const { BUILDER_DEBUG: _, ...env } = process.env;
      return spawnSync('bin/builder', ['build', '--root', join(dir, 'state'), '--progress', 'plain', ...args, context], { encoding: 'utf8', env: { ...env, ...extraEnv } });
    };
    const base = ['-f', join(context, 'Dockerfile.base'), '-t', 'bundle-training-base:1'];
    const image = ['-t', 'bundle-training:1'];
    // The base, the image, then the image again, fully cached: that run writes the cache.
    let failed;
    for (const [args, env] of [[base], [image], [image, { BUILDER_CODE_CACHE_OUT: `${SCRIPT}.cache` }]]) {
      const r = build(args, env);
      if (r.status !== 0) {
        failed = r;
        break;
      }
    }
    if (failed || !existsSync(`${SCRIPT}.cache`)) {
      const reason = failed ? `the training build failed: ${(failed.stderr || String(failed.error)).trim()}` : 'the training build wrote none';
      console.warn(`bundle: no code cache (${reason})`);
      rmSync(`${SCRIPT}.cache`, { force: true });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
