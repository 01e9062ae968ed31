// The library's entry point: `build()` runs a Dockerfile build end to end. The CLI is a thin
// shell around it; embedders call it directly and subscribe to progress events.

import pLimit from 'p-limit';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { addAbortSignal } from 'node:stream';
import { StatCache } from '../cache/checksum.js';
import { defaultStateRoot, openState, type State } from '../cache/state.js';
import { removeTemporaryFiles } from '../cache/temp-files.js';
import type { Digest, Platform } from '../definition/index.js';
import { RuncExecutor } from '../executor/runc.js';
import { distributable, type LayerCompression } from '../exporter/compress.js';
import { assembleImage, type BuiltImage } from '../exporter/image.js';
import { writeOciArchive } from '../exporter/oci-archive.js';
import { compileOptions, readBuildInput } from './input.js';
import { compile, DockerfileError, type CompileResult, type Entitlement } from '../frontend/index.js';
import type { ImageConfigFile } from '../oci/types.js';
import { BlobSources } from '../registry/blob-sources.js';
import { toPlatform } from '../oci/platform.js';
import { parseReference, type ImageReference } from '../registry/reference.js';
import { applyLayer, chainIDs, createSnapshotter, withMounts, writeLayer } from '../snapshotter/index.js';
import { track, type ProgressListener } from '../progress.js';
import { StepError } from '../solver/errors.js';
import { Solver } from '../solver/solver.js';
import { Images, LazyRegistry } from '../source/image.js';

export type Output = { type: 'oci'; dest: string };

export interface BuildOptions {
  /** The build context directory. */
  context: string;
  /** Path of the Dockerfile; default `<context>/Dockerfile`. */
  dockerfile?: string;
  /** Names for the image (`user/app:1.2`); stored locally, and pushed with `push`. */
  tags?: string[];
  buildArgs?: Record<string, string>;
  /** Labels set on the image after the Dockerfile's own (`docker build --label`). */
  labels?: Record<string, string>;
  target?: string;
  /** Target platform, `linux/arm64` or as an object (default: this machine's). One: a list is refused. */
  platform?: Platform | string;
  push?: boolean;
  outputs?: Output[];
  /** State directory; default BUILDER_ROOT, else /var/lib/builder (root) or ~/.local/share/builder. */
  root?: string;
  noCache?: boolean;
  /** Resolve base image tags at the registry even when the local store has them. */
  pull?: boolean;
  snapshotter?: 'auto' | 'overlayfs' | 'native';
  /** Unix seconds: fixes `created` times and clamps file mtimes in layers, for reproducible images. */
  sourceDateEpoch?: number;
  /** Compression of new layers when pushed or exported: gzip (default), zstd or uncompressed. Stored layers stay uncompressed. */
  compression?: LayerCompression;
  insecureRegistries?: string[];
  /** Pull-through mirrors tried before Docker Hub for docker.io images (falling back to it). */
  registryMirrors?: string[];
  /** Network of RUN steps that do not choose one: the host's (default) or `none`. */
  network?: 'none' | 'host';
  /**
   * What the Dockerfile may ask for beyond the sandbox, as BuildKit's `--allow`: `network.host`
   * for RUN --network=host, `security.insecure` for RUN --security=insecure (privileged). Without
   * it such a step fails the build before anything runs.
   */
  allow?: Entitlement[];
  /** Bytes of a RUN step's output reported per stream (default 2 MiB, as BuildKit); negative: all of it. */
  stepLogLimit?: number;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface BuildResult {
  /** The manifest in the local store (layers uncompressed); pushes and exports carry their own. */
  manifestDigest: Digest;
  configDigest: Digest;
  config: ImageConfigFile;
  /** Full names the image was stored under. */
  tags: string[];
  pushed: Array<{ ref: string; digest: Digest }>;
  /** The OCI archives written, with the manifest digest of the image in them (layers compressed). */
  exported: Array<{ dest: string; digest: Digest }>;
}

export async function build(opts: BuildOptions): Promise<BuildResult> {
  const emit: ProgressListener = opts.onProgress ?? (() => undefined);
  const platform = opts.platform === undefined ? undefined : toPlatform(opts.platform);
  const tags = (opts.tags ?? []).map((t) => parseReference(t));
  const input = await readBuildInput(opts.context, opts.dockerfile);
  const { context, dockerfileName, text: dockerfileText, dockerfile } = input;

  const state = await openState(opts.root ?? defaultStateRoot(), { signal: opts.signal, onWait: (message) => emit({ type: 'warning', message }) });
  const registry = new LazyRegistry(state, { insecureRegistries: opts.insecureRegistries, registryMirrors: opts.registryMirrors, signal: opts.signal });
  let finished = false;
  try {
    const snapshotter = await createSnapshotter(state.root, opts.snapshotter ?? 'auto');
    const executor = new RuncExecutor({ bundleRoot: join(state.root, 'bundles') });
    if (!state.previousClean) {
      // Containers first: a leftover container keeps its rootfs mount busy.
      await executor.sweep();
      await snapshotter.sweep();
      await removeTemporaryFiles(state.root);
    }
    const images = new Images(state, registry, { forcePull: opts.pull, signal: opts.signal });

    const compiled: CompileResult = await compile(dockerfile, compileOptions(input, opts, platform, (ref, p) => images.resolve(ref, p)));
    for (const w of compiled.warnings) emit({ type: 'warning', message: w.message, file: w.file, line: w.line, ...(w.rule ? { rule: w.rule } : {}) });

    const solver = new Solver(compiled.definition, {
      store: state.store,
      cache: state.cache,
      snapshotter,
      layers: {
        chainIDs,
        // A step's snapshot is unmounted while it is diffed; commit/remove wait for the unmount.
        withMounts: (mounts, fn) => withMounts(mounts, fn, { deferUnmount: true }),
        // The solver names the snapshot; applying and diffing need only where it lives.
        applyLayer: async (_sn, key, blob, mediaType) => applyLayer(await snapshotter.layout(key), blob, mediaType),
        writeLayer: async (_sn, key, store, opts) => writeLayer(await snapshotter.layout(key), store, opts),
      },
      executor,
      images,
      localDirs: { context },
      statCache: await StatCache.load(state.statCacheDir, context),
      progress: emit,
      signal: opts.signal,
      noCache: opts.noCache,
      sourceDateEpoch: opts.sourceDateEpoch,
      stepLogLimit: opts.stepLogLimit,
    });
    const layers = await solver.layersOf(compiled.root).catch((err: unknown) => {
      throw withSource(err, dockerfileName, dockerfileText);
    });

    const created = new Date(opts.sourceDateEpoch !== undefined ? opts.sourceDateEpoch * 1000 : Date.now()).toISOString();
    const image = await track(emit, { id: 'export', name: 'exporting to image' }, () =>
      assembleImage(state.store, {
        spec: compiled.image,
        layers,
        created,
        addedLayer: async (vertex) => {
          const v = compiled.definition.vertices.get(vertex);
          const parent = v?.inputs[0];
          if (!parent) return (await solver.layersOf(vertex)).length > 0;
          return (await solver.layersOf(vertex)).length > (await solver.layersOf(parent)).length;
        },
      }),
    );
    // What leaves the machine has compressed layers: made on first need, once per build.
    let shipped: Promise<BuiltImage> | undefined;
    const toShip = () => (shipped ??= distributable(state.store, state.root, image, opts.compression));
    const exported: BuildResult['exported'] = [];
    for (const out of opts.outputs ?? []) {
      await track(emit, { id: `output:${out.dest}`, name: `exporting OCI archive to ${out.dest}` }, async () => {
        const shippedImage = await toShip();
        await writeOciArchive(state.store, shippedImage, out.dest, tags.map((t) => t.toString()));
        exported.push({ dest: out.dest, digest: shippedImage.manifestDescriptor.digest });
      });
    }
    const pushed = opts.push ? await pushImage(state, registry, toShip, tags, emit, opts.signal) : [];
    // The commit point: an interrupted build names nothing, so a tag never points at an image
    // whose build or push was cut short.
    opts.signal?.throwIfAborted();
    for (const tag of tags) await state.images.tag(tag.toString(), { ...image.manifestDescriptor, platform: compiled.image.platform });
    finished = true;
    return {
      manifestDigest: image.manifestDescriptor.digest,
      configDigest: image.configDescriptor.digest,
      config: image.config,
      tags: tags.map((t) => t.toString()),
      pushed,
      exported,
    };
  } finally {
    await registry.close();
    // Failed or interrupted builds clean up after themselves too, but the next one checks.
    await state.release({ clean: finished });
  }
}

/**
 * A failed step from this Dockerfile becomes an error that shows its source lines; they show the
 * instruction, so the message does not repeat it (a long command would be printed twice).
 */
function withSource(err: unknown, file: string, text: string): unknown {
  if (!(err instanceof StepError) || err.meta.file !== file || !err.meta.startLine) return err;
  const { startLine, endLine = startLine } = err.meta;
  const source = text.split('\n').slice(startLine - 1, endLine);
  return new DockerfileError(err.reason, { file, line: startLine, endLine, source }, { cause: err });
}

async function pushImage(
  state: State,
  lazyRegistry: LazyRegistry,
  toShip: () => Promise<BuiltImage>,
  tags: ImageReference[],
  emit: ProgressListener,
  signal: AbortSignal | undefined,
): Promise<Array<{ ref: string; digest: Digest }>> {
  if (tags.length === 0) throw new Error('--push needs at least one -t name');
  const registry = await lazyRegistry.get();
  const image = await track(emit, { id: 'compress', name: 'compressing layers' }, toShip);
  const pushed: Array<{ ref: string; digest: Digest }> = [];
  const limit = pLimit(4);
  const sources = new BlobSources(state.root);
  for (const tag of tags) {
    const name = tag.toString();
    await track(emit, { id: `push:${name}`, name: `pushing ${name}` }, async () => {
      await Promise.all(
        [...image.manifest.layers, image.configDescriptor].map((desc) =>
          limit(async () => {
            const mountFrom = await sources.mountSource(desc.digest, tag);
            // 256 KiB reads: a quarter less CPU per pushed byte than the default 64 KiB. Ctrl-C
            // destroys the upload's stream, which fails the request at once.
            const open = () => {
              signal?.throwIfAborted();
              const stream = createReadStream(state.store.path(desc.digest), { highWaterMark: 256 * 1024 });
              return signal ? addAbortSignal(signal, stream) : stream;
            };
            await registry.pushBlob(tag, desc, open, mountFrom ? { mountFrom } : {});
          }),
        ),
      );
      const bytes = await state.store.readBytes(image.manifestDescriptor.digest);
      // The tag moves only once every blob is there, and never for an interrupted build.
      signal?.throwIfAborted();
      const digest = await registry.pushManifest(tag, image.manifestDescriptor.mediaType, bytes);
      await sources.record(tag, [...image.manifest.layers, image.configDescriptor].map((d) => d.digest));
      pushed.push({ ref: name, digest });
    });
  }
  return pushed;
}
