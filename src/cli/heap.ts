// V8's memory settings for the commands that move layers, set at run time rather than on node's
// command line. Any V8 flag given to node (bin/builder gave --max-semi-space-size=8 and
// --optimize-for-size) changes V8's flag hash, and V8 then refuses the code cache Node ships for
// its own modules: every built-in module a build loads (crypto, streams, net, fs/promises,
// child_process, zlib…) is compiled from source, at about 2.5 times its load time, a good part of
// a fully cached build. Set at run time, the same settings keep a cold COPY of a large context
// ~30 MB lower than V8's defaults, as the flags did.

import { setFlagsFromString } from 'node:v8';

/**
 * Once a command starts work that allocates (a build step runs, an image is pulled): the young
 * generation keeps its first semi-spaces (1 MB), and the old generation grows in small steps and
 * is collected sooner. Not before: a fully cached build allocates little, loading node:v8 is 2 ms
 * of it, and --optimize-for-size starts a full collection as soon as the old generation passes
 * ~8 MB, which a fully cached build of a large context reaches just before it exits.
 */
export function smallHeap(): void {
  if (trainingCodeCache()) return;
  setFlagsFromString('--semi-space-growth-factor=1');
  setFlagsFromString('--optimize-for-size');
}

/**
 * `npm run build` writes the code cache at exit, stamped with the flags of that moment: V8
 * accepts it only under the flags a later start has, which are V8's defaults.
 */
function trainingCodeCache(): boolean {
  return process.env.BUILDER_CODE_CACHE_OUT !== undefined;
}
