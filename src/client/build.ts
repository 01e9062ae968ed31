// The library's entry point: `build()` runs a Dockerfile build end to end. The CLI is a thin
// shell around it; embedders call it directly and subscribe to progress events.
//
// src/client owns what a caller runs (build, plan, pull, doctor), reading their inputs and
// options, and the wiring between the stages: it opens the state, hands the frontend's
// Definition to the solver and the solved layers to the exporters. It must not know how any
// stage works inside: parsing, cache keys, snapshots, containers and registry requests belong
// to their folders.

import type { Writable } from 'node:stream';
import { StatCache } from '../cache/checksum.js';
import { CacheMounts } from '../cache/cache-mounts.js';
import { Secrets, type SecretSpec } from '../source/secrets.js';
import { SshAgents, type SshSpec } from '../source/ssh.js';
import { collectGarbage, defaultKeepStorage } from '../cache/gc.js';
import { defaultStateRoot, openState, StateBusyError } from '../cache/state.js';
import { humanSize } from '../util/size.js';
import { writeFileAtomic } from '../util/write-file.js';
import { parseKeepStorage } from './config.js';
import type { Digest } from '../definition/index.js';
import { RuncExecutor } from '../executor/runc.js';
import { distributable, type LayerCompression } from '../exporter/compress.js';
import { assembleImage, type BuiltImage } from '../exporter/image.js';
import { writeImageArchive, writeOutputFile } from '../exporter/archive.js';
import { loadIntoDocker } from '../exporter/docker-load.js';
import { writeFilesystemTar, writeLocalDirectory } from '../exporter/filesystem.js';
import { pushDocument, pushImage } from '../exporter/push.js';
import { storeCacheManifest, withInlineCache, writeCacheLayout, type CacheExport } from '../exporter/cache-export.js';
import { CacheImports, type CacheImport } from '../source/cache-import.js';
import { compileOptions, readBuildInput, type BuildDefinitionOptions } from './input.js';
import { compile, DockerfileError, rfc3339, sourceDateEpochArg, type CompileResult } from '../frontend/index.js';
import type { Descriptor, ImageConfigFile } from '../oci/types.js';
import { BlobSources } from '../registry/blob-sources.js';
import { hostPlatform, toPlatform } from '../oci/platform.js';
import { parseReference } from '../registry/reference.js';
import { LazySnapshotter } from './lazy-snapshotter.js';
import { existingSnapshotter } from './du.js';
import { bundleRoot, sweepLeftovers } from './sweep.js';
import { track, type ProgressListener } from '../progress.js';
import { StepError } from '../solver/errors.js';
import { Solver, type StepForecast } from '../solver/solver.js';
import { Images, LazyRegistry } from '../source/image.js';
import { importLayoutImage, OciLayout } from '../source/oci-layout.js';
import { openNamedContexts } from './build-contexts.js';

/**
 * Where the built image goes, as BuildKit's exporters (`SolveOpt.Exports`). A build runs them in a
 * fixed order whatever the list's: archives, then pushes, then the local names last, so that no
 * name points at an image whose build or push was cut short.
 */
export type Output =
  /** The local image store, under every tag: what `docker build -t` leaves behind. */
  | { type: 'image' }
  /** Every tag's registry (`--push`). */
  | { type: 'registry' }
  /** An OCI image layout as a tar file (`--output type=oci,dest=FILE.tar`; `-`: stdout), naming every tag. */
  | { type: 'oci'; dest: string }
  /**
   * The same plus `docker load`'s manifest.json (`type=docker,dest=FILE.tar`, as `builder save`
   * writes); without `dest`, loaded into the Docker engine through `docker load` (`--load`).
   */
  | { type: 'docker'; dest?: string }
  /** The image's filesystem in a directory (`type=local,dest=DIR`), owned by the user running the build. */
  | { type: 'local'; dest: string }
  /** The image's filesystem as one tar file (`type=tar,dest=FILE`; `-`: stdout), with the image's owners. */
  | { type: 'tar'; dest: string };

/**
 * What to build and where it goes. Only `context` is required; the fields come in groups: what is
 * built (BuildDefinitionOptions: context … sourceDateEpoch), how the steps run (root … stepLogLimit), which registries base images
 * and pushes use (insecureRegistries, registryMirrors), where the image goes (tags, outputs, push,
 * compression), and what the caller watches (onProgress, signal).
 */
export interface BuildOptions extends BuildDefinitionOptions {
  // How the steps run: state, cache, snapshots.
  /** State directory; default BUILDER_ROOT, else /var/lib/builder (root) or ~/.local/share/builder. */
  root?: string;
  noCache?: boolean;
  /** Resolve base image tags at the registry even when the local store has them. */
  pull?: boolean;
  snapshotter?: 'auto' | 'overlayfs' | 'native';
  /** Bytes of a RUN step's output reported per stream (default 2 MiB, as BuildKit); negative: all of it. */
  stepLogLimit?: number;
  /**
   * After the build, prune the least recently used cache while the state directory holds more
   * than this many bytes (0: never). Default BUILDER_GC_KEEP_STORAGE, else a tenth of the disk, as
   * BuildKit's gckeepstorage.
   */
  gcKeepStorage?: number;

  // Registries, for base images and pushes.
  insecureRegistries?: string[];
  /** Pull-through mirrors tried before Docker Hub for docker.io images (falling back to it). */
  registryMirrors?: string[];

  // Where the image goes.
  /** Names for the image (`user/app:1.2`), used by the `image`, `registry`, `oci` and `docker` outputs. */
  tags?: string[];
  /** Default: `[{ type: 'image' }]`, the local image store. */
  outputs?: Output[];
  /** Shorthand for a `registry` output besides `outputs`. */
  push?: boolean;
  /** Compression of new layers when pushed or exported: gzip (default), zstd or uncompressed. Stored layers stay uncompressed. */
  compression?: LayerCompression;

  // The cache shared with other machines (`--cache-from`, `--cache-to`).
  /** Read before the build: a hit there counts as cached, its layers fetched only when read. */
  cacheFrom?: CacheImport[];
  /** Written after the build (an `inline` cache goes into pushed and exported images). */
  cacheTo?: CacheExport[];

  // What RUN --mount=type=secret and type=ssh steps reach; never part of the image or the cache.
  /** Secrets by id (`--secret`): from a file, an environment variable, or the value itself. */
  secrets?: SecretSpec[];
  /** SSH agents by id (`--ssh`): an agent socket (default: the caller's SSH_AUTH_SOCK) or private key files. */
  ssh?: SshSpec[];

  // Files about the result, written (atomically) once the image is built and named.
  /** The image ID (the config digest, `sha256:…`, no newline), as `docker build --iidfile`. */
  iidFile?: string;
  /** BuildMetadata as JSON, as `docker buildx build --metadata-file`. */
  metadataFile?: string;

  // What the caller watches.
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
  /**
   * The archives and directories written (dest `docker` for `--load`), each with the manifest
   * digest of the image exported: in `oci` and `docker` archives its layers are compressed; for
   * `local` and `tar`, the stored image's.
   */
  exported: Array<{ type: Output['type']; dest: string; digest: Digest }>;
  /** The manifest pushed (layers compressed) when the image was pushed, else the one stored. */
  descriptor: Descriptor;
}

/**
 * What `--metadata-file` holds, with BuildKit's image exporter keys as buildx writes them:
 * the manifest digest and descriptor (of the pushed image when pushed), the config digest (the
 * image ID), and the names, comma-separated, when the image has any.
 */
export interface BuildMetadata {
  'containerimage.digest': Digest;
  'containerimage.config.digest': Digest;
  'containerimage.descriptor': Descriptor;
  'image.name'?: string;
}

export function buildMetadata(result: BuildResult): BuildMetadata {
  const names = [...new Set([...result.tags, ...result.pushed.map((p) => p.ref)])];
  return {
    'containerimage.config.digest': result.configDigest,
    'containerimage.descriptor': result.descriptor,
    'containerimage.digest': result.descriptor.digest,
    ...(names.length > 0 ? { 'image.name': names.join(',') } : {}),
  };
}

export type { StepForecast } from '../solver/solver.js';

export async function build(opts: BuildOptions): Promise<BuildResult> {
  return (await runBuild(opts, false)).result!;
}

/**
 * `--explain-cache`: which steps of the build `opts` describes would come from the cache and why
 * the others would not, without running or writing anything (base images are resolved, never
 * pulled; a step on an image not in the local store would run).
 */
export async function explainCache(opts: BuildOptions): Promise<StepForecast[]> {
  return (await runBuild(opts, true)).forecast!;
}

async function runBuild(opts: BuildOptions, explainOnly: boolean): Promise<{ result?: BuildResult; forecast?: StepForecast[] }> {
  const argEpoch = opts.sourceDateEpoch === undefined && opts.buildArgs ? sourceDateEpochArg(opts.buildArgs) : undefined;
  if (argEpoch !== undefined) opts = { ...opts, sourceDateEpoch: argEpoch };
  // Whether anything ran that can grow the store (a step, a pull, compression for a push or
  // export): a fully cached build adds at most a config and manifest, and skips the collection.
  let grew = false;
  const emit: ProgressListener = (event) => {
    if (event.type === 'step' && event.status === 'started' && event.id !== 'export') grew = true;
    opts.onProgress?.(event);
  };
  const platform = opts.platform === undefined ? undefined : toPlatform(opts.platform);
  const tags = (opts.tags ?? []).map((t) => parseReference(t));
  const outputs = [...(opts.outputs ?? [{ type: 'image' }]), ...(opts.push ? [{ type: 'registry' } as const] : [])];
  const input = await readBuildInput(opts.context, opts.dockerfile, opts.dockerfileText);
  const { context, dockerfileName, text: dockerfileText, dockerfile } = input;

  // Checked before anything else: a bad --secret or --ssh fails naming its id and path.
  const secrets = await Secrets.open(opts.secrets ?? []);
  const ssh = await SshAgents.open(opts.ssh ?? []);
  const state = await openState(opts.root ?? defaultStateRoot(), {
    signal: opts.signal,
    onWait: (message) => emit({ type: 'warning', message }),
    sweep: (root) => sweepLeftovers(root, opts.snapshotter),
  }).catch((err: unknown) => {
    ssh.close();
    throw err;
  });
  const registry = new LazyRegistry(state, { insecureRegistries: opts.insecureRegistries, registryMirrors: opts.registryMirrors, signal: opts.signal });
  let finished = false;
  try {
    // Opened by the first step that needs snapshots: a fully cached build needs none.
    const snapshotter = new LazySnapshotter(state.root, opts.snapshotter ?? 'auto');
    const executor = new RuncExecutor({ bundleRoot: bundleRoot(state.root) });
    // One per build: pulls, cache imports and pushes record and read blob sources through it.
    const blobSources = new BlobSources(state.root);
    // A base image's layers are part of its FROM step: only their download bytes are reported.
    const onLayer: ProgressListener = (e) => void (e.type === 'bytes' && emit(e));
    const images = new Images(state, registry, { forcePull: opts.pull, signal: opts.signal, blobSources, onLayer });

    // An OCI layout's image is copied into the content store, then resolved as any stored image.
    const named = opts.buildContexts
      ? await openNamedContexts(opts.buildContexts, (path, pick) => importLayoutImage(state.store, new OciLayout(path), pick, platform ?? hostPlatform()))
      : undefined;
    const compiled: CompileResult = await compile(dockerfile, compileOptions(input, opts, platform, (ref, p) => images.resolve(ref, p), named));
    for (const w of compiled.warnings) emit({ type: 'warning', message: w.message, file: w.file, line: w.line, ...(w.rule ? { rule: w.rule } : {}) });

    const imported = opts.cacheFrom?.length
      ? await CacheImports.read(state.store, opts.cacheFrom, { registry: () => registry.get(), blobSources, platform: compiled.image.platform, emit })
      : undefined;
    const solver = new Solver(compiled.definition, {
      store: state.store,
      cache: state.cache,
      snapshotter,
      executor,
      images,
      localDirs: { context, ...named?.localDirs },
      dockerfilePath: input.dockerfilePath,
      statCache: await StatCache.load(state.statCacheDir, context),
      progress: emit,
      signal: opts.signal,
      noCache: opts.noCache,
      sourceDateEpoch: opts.sourceDateEpoch,
      stepLogLimit: opts.stepLogLimit,
      cacheMounts: new CacheMounts(state.root),
      secrets,
      ssh,
      importedCache: imported,
      explainOnly,
    });
    if (explainOnly) {
      await solver.solveFilesystem(compiled.root).catch((err: unknown) => {
        throw withSource(err, dockerfileName, dockerfileText);
      });
      finished = true;
      return { forecast: solver.forecast() };
    }
    const solved = await solver.solveFilesystem(compiled.root).catch((err: unknown) => {
      throw withSource(err, dockerfileName, dockerfileText);
    });
    // The image's layers are needed now (imported cache hits and deferred base pulls), and only those.
    await solver.fetchBlobs(solved.layers);

    const created = opts.sourceDateEpoch !== undefined ? rfc3339(opts.sourceDateEpoch) : new Date().toISOString();
    const image = await track(emit, { id: 'export', name: 'exporting to image' }, () =>
      assembleImage(state.store, { spec: compiled.image, layers: solved.layers, addedLayer: solved.addedLayer, created, fixed: opts.sourceDateEpoch !== undefined }),
    );
    // What leaves the machine has compressed layers: made on first need, once per build.
    let shipped: Promise<BuiltImage> | undefined;
    const cacheTo = opts.cacheTo ?? [];
    const inline = cacheTo.some((c) => c.type === 'inline');
    if (inline && !outputs.some((o) => o.type === 'registry' || o.type === 'oci' || o.type === 'docker')) {
      emit({ type: 'warning', message: '--cache-to type=inline: no image is pushed or exported, so the inline cache goes nowhere' });
    }
    const toShip = () =>
      (shipped ??= distributable(state.store, state.root, image, opts.compression).then((img) =>
        inline ? withInlineCache(state.store, img, solver.cacheRecords(compiled.root, 'min'), created) : img,
      ));
    const names = tags.map((t) => t.toString());
    const exported: BuildResult['exported'] = [];
    for (const out of outputs) {
      if (out.type === 'image' || out.type === 'registry') continue;
      const dest = out.dest ?? 'docker';
      await track(emit, { id: `output:${out.type}:${dest}`, name: exportName(out) }, async () => {
        if (out.type === 'local' || out.type === 'tar') {
          const layers = { layers: image.manifest.layers, diffIDs: image.config.rootfs.diff_ids };
          await (out.type === 'local' ? writeLocalDirectory(state.store, layers, dest, opts.signal) : writeFilesystemTar(state.store, layers, dest, opts.signal));
          exported.push({ type: out.type, dest, digest: image.manifestDescriptor.digest });
          return;
        }
        const shippedImage = await toShip();
        const archived = [{ manifestDescriptor: shippedImage.manifestDescriptor, manifest: shippedImage.manifest, names }];
        const write = (stream: Writable) => writeImageArchive(state.store, archived, stream, out.type);
        if (out.type === 'docker' && out.dest === undefined) {
          const loaded = await loadIntoDocker(write, opts.signal);
          if (loaded) emit({ type: 'log', id: `output:${out.type}:${dest}`, stream: 'stdout', data: `${loaded}\n`, at: Date.now() });
        } else {
          await writeOutputFile(dest, write, opts.signal);
        }
        exported.push({ type: out.type, dest, digest: shippedImage.manifestDescriptor.digest });
      });
    }
    const pushed: BuildResult['pushed'] = [];
    let descriptor = image.manifestDescriptor;
    if (outputs.some((o) => o.type === 'registry')) {
      if (tags.length === 0) throw new Error('--push needs at least one -t name');
      const target = { store: state.store, registry: await registry.get(), sources: blobSources, signal: opts.signal };
      const shippedImage = await track(emit, { id: 'compress', name: 'compressing layers' }, toShip);
      descriptor = shippedImage.manifestDescriptor;
      for (const tag of tags) {
        const name = tag.toString();
        const digest = await track(emit, { id: `push:${name}`, name: `pushing ${name}` }, () => pushImage(target, shippedImage, tag));
        pushed.push({ ref: name, digest });
      }
    }
    for (const to of cacheTo) {
      if (to.type === 'inline') continue;
      const where = to.type === 'registry' ? to.ref : to.dest;
      await track(emit, { id: `cache-to:${where}`, name: `exporting cache to ${where}` }, async () => {
        const records = solver.cacheRecords(compiled.root, to.mode ?? 'min');
        // Exported blobs must be here: imported hits that nothing read are fetched now.
        await solver.fetchBlobs(records.flatMap((r) => r.layers));
        const cache = await storeCacheManifest(state.store, state.root, records, { compression: to.compression, createdAt: created });
        if (to.type === 'local') return writeCacheLayout(state.store, cache, to.dest, to.tag ?? 'latest');
        const target = { store: state.store, registry: await registry.get(), sources: blobSources, signal: opts.signal };
        await pushDocument(target, cache.blobs, cache.index, parseReference(to.ref));
      });
    }
    // The commit point: an interrupted build names nothing, so a tag never points at an image
    // whose build or push was cut short.
    opts.signal?.throwIfAborted();
    const stored = outputs.some((o) => o.type === 'image') ? names : [];
    for (const name of stored) await state.images.tag(name, { ...image.manifestDescriptor, platform: compiled.image.platform });
    const result: BuildResult = {
      manifestDigest: image.manifestDescriptor.digest,
      configDigest: image.configDescriptor.digest,
      config: image.config,
      tags: stored,
      pushed,
      exported,
      descriptor: { mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size },
    };
    if (opts.iidFile !== undefined) await writeResultFile(opts.iidFile, '--iidfile', result.configDigest);
    if (opts.metadataFile !== undefined) await writeResultFile(opts.metadataFile, '--metadata-file', `${JSON.stringify(buildMetadata(result), null, 2)}\n`);
    finished = true;
    return { result };
  } finally {
    ssh.close();
    await registry.close();
    // Failed or interrupted builds clean up after themselves too, but a later one checks.
    await state.release({ clean: finished });
    // With the new image named, the collection keeps it and its cache.
    if (grew && finished && !explainOnly) await collect(state.root, opts.gcKeepStorage, emit);
  }
}

function exportName(out: Exclude<Output, { type: 'image' | 'registry' }>): string {
  if (out.type === 'docker' && out.dest === undefined) return 'loading the image into docker';
  const what = { oci: 'OCI archive', docker: 'docker archive', local: 'filesystem', tar: 'filesystem tar' }[out.type];
  return `exporting ${what} to ${out.dest === '-' ? 'stdout' : out.dest}`;
}


/** A file about the result; a failure names the flag and the file. */
async function writeResultFile(file: string, flag: string, text: string): Promise<void> {
  await writeFileAtomic(file, text).catch((err: NodeJS.ErrnoException) => {
    throw new Error(`${flag} ${file}: ${err.code === 'ENOENT' ? 'no such directory' : err.message}`);
  });
}

/**
 * The collection after a build, when the store is over its limit and nobody else uses it (it
 * needs the directory alone: with other builds running, the last of them to finish collects). A
 * failure is a warning, as the image is built and named.
 */
async function collect(root: string, option: number | undefined, emit: ProgressListener): Promise<void> {
  try {
    const env = process.env.BUILDER_GC_KEEP_STORAGE;
    const keep = option ?? (env !== undefined && env !== '' ? parseKeepStorage(env, 'BUILDER_GC_KEEP_STORAGE') : await defaultKeepStorage(root));
    if (keep <= 0) return;
    const state = await openState(root, { access: 'exclusive', waitMs: 0 }).catch((err: unknown) => {
      if (err instanceof StateBusyError) return undefined;
      throw err;
    });
    if (!state) return;
    try {
      const removed = await collectGarbage(state, await existingSnapshotter(root), keep);
      if (removed.length > 0) {
        const freed = removed.reduce((n, e) => n + e.size, 0);
        emit({ type: 'warning', message: `garbage collection: the state directory held more than ${humanSize(keep)}; removed ${removed.length} least recently used entries (${humanSize(freed)})` });
      }
    } finally {
      await state.release({ clean: true });
    }
  } catch (err) {
    emit({ type: 'warning', message: `garbage collection failed: ${(err as Error).message}` });
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
