// Bundles the CLI (after tsc) into a few ESM files: start-up is a large share of a cached build
// or a dry run, and one file per module costs a resolution and a read each. Code behind dynamic
// imports (the registry client, the build machinery, login) stays in chunks loaded on demand.
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

// Chunk names carry content hashes: clear out those of earlier builds.
rmSync('dist/cli-bundle', { recursive: true, force: true });
await build({
  entryPoints: ['dist/cli/main.js'],
  outdir: 'dist/cli-bundle',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Loaded from node_modules as they are: a native addon, and ssh2 whose optional native
  // addons (tried at load) esbuild cannot bundle.
  external: ['fs-xattr', 'ssh2'],
  // CommonJS dependencies call require() for Node's own modules; ESM output has none of its own.
  banner: { js: "import { createRequire as __builderRequire } from 'node:module'; const require = __builderRequire(import.meta.url);" },
  sourcemap: true,
  logLevel: 'warning',
});
