// V8's memory settings for the commands that move layers, set at run time rather than on node's
// command line. Any V8 flag given to node (bin/builder gave --max-semi-space-size=8 and
// --optimize-for-size) changes V8's flag hash, and V8 then refuses the code cache Node ships for
// its own modules: every built-in module a build loads (crypto, streams, net, fs/promises,
// child_process, zlib…) is compiled from source, at about 2.5 times its load time, a good part of
// a fully cached build. Set at run time, the same settings keep a cold COPY of a large context
// ~30 MB lower than V8's defaults, as the flags did.

import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Once a command starts work that allocates (a build step runs, an image is pulled): the young
 * generation keeps its first semi-spaces (1 MB), the old generation grows in small steps and is
 * collected sooner, and the buffers bytes passed through are freed as they pile up
 * (collectArrayBuffers). Not before: a fully cached build allocates little, loading node:v8 is 2 ms
 * of it, and --optimize-for-size starts a full collection as soon as the old generation passes
 * ~8 MB, which a fully cached build of a large context reaches just before it exits.
 */
export function smallHeap(): void {
  if (trainingCodeCache()) return;
  setFlagsFromString('--semi-space-growth-factor=1');
  setFlagsFromString('--optimize-for-size');
  collectArrayBuffers();
}

/**
 * Growth of the memory outside V8's heap (ArrayBuffers: mostly unreferenced ones, during a pull)
 * after which a full collection is asked for.
 */
const ARRAY_BUFFER_SLACK = 16 * 1024 * 1024;
const ARRAY_BUFFER_CHECK_MS = 100;

/**
 * Frees the buffers that layer bytes passed through. V8 frees an ArrayBuffer that is no longer
 * referenced only in a full collection, and starts one for them only once there are 64 MB more
 * of them than after the last: every byte of a pull goes through such buffers (read from the
 * socket, written to the content store, inflated), so a 50 MB layer left ~50 MB resident until
 * the process ended, about 40 % of node's peak. Here a full collection runs whenever they have
 * grown by ARRAY_BUFFER_SLACK over the least seen since the last (V8 frees them on a thread of
 * its own after the collection). The process is the command's own: the library leaves an
 * embedder's heap to its embedder.
 */
function collectArrayBuffers(): void {
  // The gc extension is installed in the contexts made after the flag is set: one is made at the
  // first collection (making it costs ~1.5 ms, which a command that moves little never pays).
  setFlagsFromString('--expose-gc');
  let gc: (() => void) | undefined;
  let least = Infinity;
  setInterval(() => {
    // V8's own count, which includes every ArrayBuffer: process.memoryUsage() reads /proc, and
    // throws when it cannot (out of file descriptors, say).
    const now = getHeapStatistics().external_memory;
    least = Math.min(least, now);
    if (now - least < ARRAY_BUFFER_SLACK) return;
    gc ??= exposedGc();
    gc();
    least = Infinity;
  }, ARRAY_BUFFER_CHECK_MS).unref();
}

/** V8's gc(), or a function that does nothing where the extension is not there. */
function exposedGc(): () => void {
  const gc: unknown = runInNewContext('typeof gc === "function" ? gc : undefined');
  return typeof gc === 'function' ? (gc as () => void) : () => undefined;
}

/**
 * `npm run build` writes the code cache at exit, stamped with the flags of that moment: V8
 * accepts it only under the flags a later start has, which are V8's defaults.
 */
function trainingCodeCache(): boolean {
  return process.env.BUILDER_CODE_CACHE_OUT !== undefined;
}
