// The solver walks a Definition from its root: each vertex once, inputs first (independent
// branches in parallel), asks the cache index by cache key, and runs only the misses. A vertex's
// result is the layer chain of its filesystem; snapshots are unpacked only when a miss needs them.
//
// src/solver owns walking the Definition, cache keys and lookups, running misses through the
// Executor and ImageSource it is given, and the file ops of COPY/ADD. It must not know
// Dockerfile syntax (only the Definition), registries, or how images are exported.
//
// Over 500 lines on purpose: one class whose op handlers share the per-build state (results per
// vertex, snapshots being unpacked, work per cache key, the step slots); the file ops themselves
// live in solver/file/.

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import type { Readable } from 'node:stream';
import { join } from 'node:path';
import type { CacheIndex, KeyIngredients, LayerRecord } from '../cache/cache-index.js';
import { checksumSources, type StatCache } from '../cache/checksum.js';
import { dockerignoreFilter, selectSources, type KeptWalk, type Source, type SourceFilter, type WalkEntry } from '../util/select.js';
import type { ContentStore } from '../cache/content-store.js';
import {
  type CopyAction,
  type Definition,
  type Digest,
  type ExecOp,
  type FileOp,
  type HttpOp,
  type ImageOp,
  type LocalOp,
  type ScratchOp,
  type Platform,
  type Vertex,
  redactCredentials,
} from '../definition/index.js';
import { canonicalJson, chainID, chainIDs, sha256 } from '../oci/digest.js';
import type { AgentConnector, RunResult, RunSpec } from '../executor/runc.js';
import {
  settleUnmount,
  SnapshotExistsError,
  unpackLayer,
  withMounts,
  writeLayer,
  type LocalSnapshotter,
  type Mount,
  type Usage,
  type WriteLayerOptions,
  type WrittenLayer,
} from '../snapshotter/index.js';
import { copyAction, makeFile, mkdirAll, resolveOwner, selectWithExclude, writeCopiedFile, writeScripts, type CopyReuse, type Owner } from './file/index.js';
import { copyFamily, earlierCopy, earlierLayer, recordCopy, type CopyHistory } from './copy-history.js';
import { StepError } from './errors.js';
import { Scheduler, type StepKind } from './scheduler.js';
import { track, type ProgressListener } from '../progress.js';
import { StepOutput } from './step-output.js';
import { bindSources, withExecMounts, type MountFacilities } from './exec-mounts.js';
import { explainMiss, FileList, valueDigest } from './explain.js';

/** Runs one command in a container (src/executor's RuncExecutor, or another runtime). */
export interface Executor {
  run(spec: RunSpec): Promise<RunResult>;
  /**
   * Told that a step will (likely) run a container soon: before a base image is pulled (which
   * grows this process) when the build has RUN steps, and before a step's parent is unpacked, so
   * the executor can get ready while that happens.
   */
  willRun?(): void;
}

/** Provides a base image's layers in the content store (see src/registry). */
export interface ImageSource {
  /** The layers when the image is already complete in the content store, without any network. */
  local(ref: string): Promise<LayerRecord[] | undefined>;
  /** The layers of an image whose manifest and config are in the content store, its blobs there or not. */
  described(ref: string): Promise<LayerRecord[] | undefined>;
  /** Brings the image's blobs into the content store, and its layers into snapshots through `unpack` when given. */
  pull(ref: string, platform: Platform, signal?: AbortSignal, unpack?: PullUnpacker): Promise<LayerRecord[]>;
}

/**
 * Unpacks a base image's layers while it is pulled. Called once, before any download, with the
 * image's layers; answers, per layer, how to unpack it, or undefined when that layer needs nothing.
 */
export interface PullUnpacker {
  accept(layers: LayerRecord[]): Array<LayerUnpack | undefined>;
}

/**
 * One layer's unpack. The puller calls `give` once with the layer's bytes (a download as it
 * arrives, or the stored blob), or `fail` when it has none; `done` settles once the layer is
 * unpacked or has failed to be. Layers apply in order: a download can be unpacked as it arrives
 * only while `ready` (the layer below is complete); otherwise it is given once stored.
 */
export interface LayerUnpack {
  readonly ready: boolean;
  /** `stored` settles once the same bytes are in the content store, verified: nothing is committed unless it fulfils. */
  give(blob: Readable, stored: Promise<unknown>): void;
  fail(err: unknown): void;
  readonly done: Promise<void>;
}

/** The secrets a build was given, by id (see src/source/secrets.ts). */
export interface SecretProvider {
  /** The value, or undefined when the build has no secret `id`. */
  get(id: string): Promise<Buffer | undefined>;
}

/** The SSH agents a build was given, by id (see src/source/ssh.ts). */
export interface SshProvider {
  get(id: string): AgentConnector | undefined;
}

/** Cache mount directories kept between builds (see src/cache/cache-mounts.ts). */
export interface CacheMountStore {
  acquire(request: CacheMountRequest): Promise<CacheMountLease>;
}

export interface CacheMountRequest {
  id: string;
  sharing: 'shared' | 'private' | 'locked';
  /**
   * Set when the cache is seeded from another filesystem: caches with one id but different
   * seeds are different caches (as BuildKit keys them by id and seed).
   */
  seedKey?: string;
  /** Mode and owner of a new cache directory. */
  mode: number;
  uid: number;
  gid: number;
  /** Fills a new cache directory before its first use. */
  seed?: (dir: string) => Promise<void>;
  signal?: AbortSignal;
}

export interface CacheMountLease {
  /** The directory to mount; the caller's alone while held when sharing is private or locked. */
  dir: string;
  release(): Promise<void>;
}

/**
 * Cache records from elsewhere (`--cache-from`), consulted on a local miss. Their blobs stay
 * where they are until something reads them: a hit that nobody unpacks or exports is never fetched.
 */
export interface ImportedCache {
  /** The layers recorded under `key`, each blob in the content store or fetchable; undefined on a miss. */
  lookup(key: Digest): Promise<LayerRecord[] | undefined>;
  /** Brings those blobs of `layers` that the content store lacks into it, verified. */
  fetch(layers: LayerRecord[]): Promise<void>;
}

export interface SolverOptions {
  store: ContentStore;
  cache: CacheIndex;
  /**
   * Where filesystems are unpacked and changed; layers go in and out through src/snapshotter's
   * apply and diff, which work on a snapshot's directories (its layout).
   */
  snapshotter: LocalSnapshotter;
  executor: Executor;
  images: ImageSource;
  /** Directories of `local` sources, by name (`context`). */
  localDirs: Record<string, string>;
  /**
   * The Dockerfile's absolute path: a step's position across builds names it, not the name the
   * step's metadata carries for messages, which changes with how `-f` was spelled.
   */
  dockerfilePath?: string;
  statCache: StatCache;
  progress: ProgressListener;
  signal?: AbortSignal;
  noCache?: boolean;
  sourceDateEpoch?: number;
  /** Bytes of a step's output shown per stream (default 2 MiB, as BuildKit); negative: all. */
  stepLogLimit?: number;
  /** Where cache mounts live; without it a step with a cache mount fails. */
  cacheMounts?: CacheMountStore;
  secrets?: SecretProvider;
  ssh?: SshProvider;
  importedCache?: ImportedCache;
  /**
   * Run nothing and write nothing: look each step up by its key and note whether it would come
   * from the cache, and why not (see forecast()). A step after one that would run gets a key of
   * its own, not in the cache, so it would run too. Stage sources count by key only (their
   * content is not there to read).
   */
  explainOnly?: boolean;
}

/** Whether a step would come from the cache, and why not (`--explain-cache`). */
export interface StepForecast {
  name: string;
  file?: string;
  line?: number;
  cached: boolean;
  reason?: string;
}

/** A cache key and what it was made of. */
interface Keyed {
  key: Digest;
  ingredients: Omit<KeyIngredients, 'key' | 'name'>;
  /** The files read, summarised only when a miss is explained or a new key recorded (costly for a large context). */
  files?: FileList;
  /** A file op's walks of its context sources, by source path, for its copy to take (see fileCacheKey). */
  walks?: Map<string, KeptWalk>;
}

/** A step's result as far as its key goes: no layers yet, and (exec, file) what the key was made of. */
type KeyStub = SolvedResult & { keyed?: Keyed; byContent?: boolean };

export type SolvedResult =
  | { kind: 'layers'; cacheKey: Digest; layers: LayerRecord[] }
  | { kind: 'local'; dir: string; filter: SourceFilter | undefined };

/** A solved root filesystem, as an exporter needs it. */
export interface SolvedFilesystem {
  layers: LayerRecord[];
  /**
   * The root and those of its ancestors whose layers are more than their first input's: a history
   * entry for any other step is an empty_layer. (A step always adds one today; cache records of
   * older versions may not.)
   */
  addedLayer: ReadonlySet<Digest>;
}

export class Solver {
  private readonly results = new Map<Digest, Promise<SolvedResult>>();
  private readonly snapshots = new Map<string, Promise<void>>();
  /** The work under way or done for each cache key, so that vertices sharing one run it once. */
  private readonly byCacheKey = new Map<Digest, Promise<{ layers: LayerRecord[]; ran: boolean }>>();
  /** The image vertex that brought in each base layer (by blob digest): unpacking it is that step's work. */
  private readonly layerOrigins = new Map<Digest, { digest: Digest; v: Vertex }>();
  /** The cache keys each keyed step was solved under, and its layers: what a cache export shares. */
  private readonly keyed = new Map<Digest, { keys: Digest[]; layers: LayerRecord[] }>();
  /** Imported cache hits whose blobs are not all here yet (see recordImported). */
  private readonly importedHits = new Map<Digest, LayerRecord[]>();
  /** Base images whose pull waits until something reads their layers, by layer blob (see deferPull). */
  private readonly deferredPulls = new Map<Digest, () => Promise<unknown>>();
  /** Step slots by what steps wait on; independent stages share them. */
  private readonly scheduler = new Scheduler();
  /** Why each step that runs is not from the cache, by vertex digest (set before it runs). */
  private readonly reasons = new Map<Digest, string>();
  /** Names of the steps that ran in this build: a step whose parent is one of them says so. */
  private readonly ranSteps = new Set<string>();
  /** Steps never loaded because a later step of theirs hit the cache (see skipAncestors). */
  private readonly skipped = new Set<Digest>();
  /** Keys from the definition, computed before (or instead of) solving, by vertex digest (see stub). */
  private readonly stubs = new Map<Digest, Promise<KeyStub | undefined>>();
  /** With explainOnly: each step's forecast, by vertex digest. */
  private readonly forecasts = new Map<Digest, StepForecast>();

  constructor(
    private readonly def: Definition,
    private readonly opts: SolverOptions,
  ) {}

  /** Whether the definition has a step that runs a container. */
  private get runsContainers(): boolean {
    for (const v of this.def.vertices.values()) if (v.op.type === 'exec') return true;
    return false;
  }

  solve(digest: Digest): Promise<SolvedResult> {
    let pending = this.results.get(digest);
    if (!pending) {
      pending = this.solveVertex(digest);
      this.results.set(digest, pending);
    }
    return pending;
  }

  /** Solves `root`, a filesystem, for export: its layers, and which steps added one. */
  async solveFilesystem(root: Digest): Promise<SolvedFilesystem> {
    const r = await this.solve(root);
    if (r.kind !== 'layers') throw new Error(`vertex ${root} is not a filesystem`);
    // How many layers a step's filesystem has, where known: a skipped step without a record
    // counts as adding one, as every step does today.
    const count = async (d: Digest): Promise<number | undefined> => {
      const solved = this.results.has(d) ? await this.results.get(d) : undefined;
      if (solved) return solved.kind === 'layers' ? solved.layers.length : 0;
      return this.keyed.get(d)?.layers.length;
    };
    const addedLayer = new Set<Digest>();
    for (const d of ancestry(this.def, root)) {
      const parent = this.def.vertices.get(d)?.inputs[0];
      const [mine, before] = [await count(d), parent === undefined ? 0 : await count(parent)];
      const makesLayer = ['exec', 'file', 'http'].includes(this.vertex(d).op.type);
      if (mine === undefined || before === undefined ? makesLayer : mine > before) addedLayer.add(d);
    }
    return { layers: r.layers, addedLayer };
  }

  /**
   * What a cache export shares once `root` is solved: the cache keys and layers of the steps of
   * `root`'s own stage (`min`), or of every step it depends on, other stages' included (`max`).
   */
  cacheRecords(root: Digest, mode: 'min' | 'max'): Array<{ key: Digest; layers: LayerRecord[] }> {
    const steps = new Set<Digest>();
    if (mode === 'max') for (const d of ancestry(this.def, root)) steps.add(d);
    else for (let d: Digest | undefined = root; d !== undefined; d = this.def.vertices.get(d)?.inputs[0]) steps.add(d);
    const records: Array<{ key: Digest; layers: LayerRecord[] }> = [];
    for (const d of steps) for (const key of this.keyed.get(d)?.keys ?? []) records.push({ key, layers: this.keyed.get(d)!.layers });
    return records;
  }

  /** With explainOnly, after solve(): the visible steps, in the definition's order. */
  forecast(): StepForecast[] {
    return [...this.def.vertices.keys()].flatMap((d) => this.forecasts.get(d) ?? []);
  }

  private vertex(digest: Digest): Vertex {
    const v = this.def.vertices.get(digest);
    if (!v) throw new Error(`definition has no vertex ${digest}`);
    return v;
  }

  private async solveVertex(digest: Digest): Promise<SolvedResult> {
    const v = this.vertex(digest);
    // Looked up before its inputs are solved: a hit needs none of them (an awaited check also
    // keeps a long chain from recursing on the stack).
    const hit = await this.hitByDefinition(digest, v);
    if (hit) return hit;
    const inputs = await Promise.all(v.inputs.map((i) => this.solve(i)));
    this.opts.signal?.throwIfAborted();
    switch (v.op.type) {
      case 'scratch':
        return scratchResult(v.op);
      case 'local':
        return this.localResult(v.op);
      case 'image':
        return this.solveImage(digest, v, v.op);
      case 'exec':
        return this.solveExec(digest, v, v.op, inputs);
      case 'file':
        return this.solveFile(digest, v, v.op, inputs);
      case 'http':
        return this.solveHttp(digest, v, v.op);
    }
  }

  private localResult(op: LocalOp): SolvedResult {
    const dir = this.opts.localDirs[op.name];
    if (!dir) throw new Error(`no local directory named ${op.name}`);
    return { kind: 'local', dir, filter: dockerignoreFilter(op.exclude) };
  }

  /**
   * A step found in the cache by its key from the definition, computed from its inputs' keys
   * without solving them (as BuildKit's cache keys come before results): a stage whose result
   * only feeds cached steps never runs, and an imported cache hit pulls nothing it does not need.
   */
  private async hitByDefinition(digest: Digest, v: Vertex): Promise<SolvedResult | undefined> {
    if (this.opts.noCache || (v.op.type !== 'exec' && v.op.type !== 'file')) return undefined;
    const stub = await this.stub(digest);
    const cached = stub?.keyed && (await this.lookup(stub.keyed.key));
    if (!stub?.keyed || !cached) return undefined;
    this.keyed.set(digest, { keys: [stub.keyed.key], layers: cached });
    // As solveKeyed: a step keyed by content has its last miss's ingredients, which explain its next one better.
    if (!stub.byContent && !this.opts.explainOnly) await this.recordIngredients(v, stub.keyed);
    await this.skipAncestors(digest);
    return this.cachedResult(digest, v, stub.keyed.key, cached);
  }

  /**
   * The ancestors of a step that hit the cache before its inputs were solved, and that nothing
   * solved meanwhile: never loaded (BuildKit does not load them either), they are reported
   * cached, before it, and a cache export shares those that have a record.
   */
  private async skipAncestors(digest: Digest): Promise<void> {
    const skipped = postorder(this.def, digest, (d) => this.results.has(d) || this.skipped.has(d)).slice(0, -1);
    for (const d of skipped) this.skipped.add(d);
    for (const d of skipped) {
      const key = (await this.stubs.get(d))?.keyed?.key;
      const layers = key === undefined ? undefined : await this.lookup(key);
      if (key !== undefined && layers) this.keyed.set(d, { keys: [key], layers });
      this.cachedResult(d, this.vertex(d), key ?? d, layers ?? []);
    }
  }

  /**
   * The key of `root` from the definition, and what it was made of, with those of its ancestors
   * (memoised): the local contexts' files count by content, everything else by key. Undefined
   * where a key needs a result (a download without a checksum) or cannot be computed (a missing
   * COPY source: solving reports that).
   */
  private stub(root: Digest): Promise<KeyStub | undefined> {
    if (!this.stubs.has(root)) {
      for (const d of postorder(this.def, root, (d) => this.stubs.has(d))) this.stubs.set(d, this.computeStub(d).catch(() => undefined));
    }
    return this.stubs.get(root) as Promise<KeyStub | undefined>;
  }

  private async computeStub(digest: Digest): Promise<KeyStub | undefined> {
    const v = this.vertex(digest);
    const op = v.op;
    switch (op.type) {
      case 'scratch':
        return scratchResult(op);
      case 'local':
        return this.localResult(op);
      case 'image':
        return { kind: 'layers', cacheKey: imageCacheKey(op), layers: [] };
      case 'http':
        return op.checksum ? { kind: 'layers', cacheKey: httpCacheKey(op.filename, op.checksum), layers: [] } : undefined;
      case 'exec':
      case 'file': {
        const inputs: SolvedResult[] = [];
        for (const i of v.inputs) {
          const input = await this.stubs.get(i);
          if (!input) return undefined;
          inputs.push(input);
        }
        const keyed = op.type === 'exec' ? await this.execCacheKey(v, op, inputs, false) : await this.fileCacheKey(v, op, inputs, layersInput(inputs[0], v).cacheKey, false);
        const byContent = op.type === 'exec' ? execByContent(op, inputs) : fileByContent(op, inputs);
        return { kind: 'layers', cacheKey: keyed.key, layers: [], keyed, byContent };
      }
    }
  }

  private step(digest: Digest, v: Vertex) {
    const reason = this.reasons.get(digest);
    return { id: digest, name: v.meta.name, file: v.meta.file, line: v.meta.startLine, hidden: v.meta.hidden, ...(reason ? { reason } : {}) };
  }

  private async solveImage(digest: Digest, v: Vertex, op: ImageOp): Promise<SolvedResult> {
    const cacheKey = imageCacheKey(op);
    const at = op.ref.lastIndexOf('@');
    const keyed: Keyed = { key: cacheKey, ingredients: { op: { ref: at < 0 ? op.ref : op.ref.slice(0, at), platform: canonicalJson(op.platform) }, image: at < 0 ? op.ref : op.ref.slice(at + 1) } };
    let local = await this.opts.images.local(op.ref);
    if (!local && this.opts.explainOnly) return this.wouldRun(digest, v, keyed);
    let layers = local ?? (await this.deferPull(digest, v, op));
    if (!layers) {
      // Before the pull grows this process: RUN steps will most likely follow a cold base.
      if (this.runsContainers) this.opts.executor.willRun?.();
      // Claimed as a step's key is: two builds that need the same base pull it once.
      const letGo = await this.opts.cache.claim(cacheKey, { signal: this.opts.signal });
      try {
        local = await this.opts.images.local(op.ref);
        layers =
          local ??
          (await this.explained(digest, v, keyed, () => this.run(digest, v, 'network', () => this.opts.images.pull(op.ref, op.platform, this.opts.signal, this.unpackWhilePulling))));
      } finally {
        await letGo();
      }
    }
    for (const layer of layers) if (!this.layerOrigins.has(layer.digest)) this.layerOrigins.set(layer.digest, { digest, v });
    if (!this.opts.explainOnly) await this.recordIngredients(v, keyed);
    return local ? this.cachedResult(digest, v, cacheKey, local) : { kind: 'layers', cacheKey, layers };
  }

  /**
   * With an imported cache, a base image is pulled only once something reads its layers (as
   * BuildKit's lazy pulls): a stage whose every step is a hit and whose result nobody unpacks
   * never pulls its base. The step is reported when the pull runs.
   */
  private async deferPull(digest: Digest, v: Vertex, op: ImageOp): Promise<LayerRecord[] | undefined> {
    if (!this.opts.importedCache) return undefined;
    const layers = await this.opts.images.described(op.ref);
    if (!layers) return undefined;
    let pulled: Promise<unknown> | undefined;
    // Without unpacking: an export may be what needs the blobs, and a step that needs a snapshot
    // is unpacking it already (it asked for the pull).
    const pull = () => (pulled ??= this.run(digest, v, 'network', () => this.opts.images.pull(op.ref, op.platform, this.opts.signal)));
    for (const layer of layers) if (!this.deferredPulls.has(layer.digest)) this.deferredPulls.set(layer.digest, pull);
    return layers;
  }

  /**
   * Brings the blobs of `layers` into the content store when they are not there: a base image
   * pull that waited, or an imported cache hit's download. The exporter calls it for the image.
   */
  async fetchBlobs(layers: LayerRecord[]): Promise<void> {
    const { store, importedCache } = this.opts;
    await Promise.all(
      layers.map(async (layer) => {
        if (await store.has(layer.digest)) return;
        const pull = this.deferredPulls.get(layer.digest);
        if (pull) await pull();
        else await importedCache?.fetch([layer]);
      }),
    );
    await this.recordImported();
  }

  /**
   * ADD <url>: with a checksum the cache key is known before downloading (a hit downloads
   * nothing); without one the file is downloaded and keyed by its content.
   */
  private async solveHttp(digest: Digest, v: Vertex, op: HttpOp): Promise<SolvedResult> {
    if (op.checksum) {
      const cacheKey = httpCacheKey(op.filename, op.checksum);
      const cached = await this.lookup(cacheKey);
      if (cached) {
        this.keyed.set(digest, { keys: [cacheKey], layers: cached });
        return this.cachedResult(digest, v, cacheKey, cached);
      }
    }
    if (this.opts.explainOnly) {
      const keyed: Keyed = { key: sha256(canonicalJson({ op })), ingredients: { op: { url: redactCredentials(op.url) } } };
      return this.wouldRun(digest, v, keyed, op.checksum ? undefined : 'downloads the URL to know its content (no --checksum)');
    }
    let contentDigest: Digest | undefined;
    const body = await this.run(digest, v, 'network', async () => {
      // The HTTP client (http, https, tls) is loaded only by a build that downloads.
      const { download } = await import('../source/http.js');
      const res = await download(op.url, this.opts.signal);
      const url = redactCredentials(op.url);
      if (res.status < 200 || res.status >= 300) throw new StepError(v.meta, `failed to download ${url}: HTTP ${res.status} ${res.statusText}`);
      contentDigest = sha256(res.data);
      if (op.checksum && contentDigest !== op.checksum) {
        throw new StepError(v.meta, `checksum mismatch for ${url}: expected ${op.checksum}, got ${contentDigest}`);
      }
      return { data: res.data, mtime: res.lastModified ? new Date(res.lastModified) : undefined };
    });
    const cacheKey = httpCacheKey(op.filename, contentDigest!);
    const { layers } = await this.once(cacheKey, v.meta.name, () =>
      this.mutate([], {}, async (rootfs) => {
        await makeFile(rootfs, `/${op.filename}`, body.data, 0o600, { uid: 0, gid: 0 });
        if (body.mtime && !Number.isNaN(body.mtime.getTime())) await utimes(join(rootfs, op.filename), body.mtime, body.mtime);
      }),
    );
    this.keyed.set(digest, { keys: [cacheKey], layers });
    return { kind: 'layers', cacheKey, layers };
  }

  private async solveExec(digest: Digest, v: Vertex, op: ExecOp, inputs: SolvedResult[]): Promise<SolvedResult> {
    const parent = layersInput(inputs[0], v);
    // A bind mount from a stage counts by content only after a miss by cache key, as COPY --from.
    const byContent = execByContent(op, inputs);
    return this.solveKeyed(digest, v, byContent, (content) => this.execCacheKey(v, op, inputs, content), () =>
      this.runExec(digest, v, op, parent.layers, inputs),
    );
  }

  /**
   * The cache key of an exec op: the op (proxy settings aside: they change how the command reaches
   * the network, not what it builds) and its inputs' keys, where a bind-mounted input counts by
   * the content of what is mounted. Never what a cache mount holds, nor a secret's value.
   */
  private async execCacheKey(v: Vertex, op: ExecOp, inputs: SolvedResult[], byContent: boolean): Promise<Keyed> {
    const { proxyEnv: _proxyEnv, ...rest } = op;
    // As BuildKit: an --add-host counts by its name; where it points may change between builds.
    const keyed = rest.extraHosts ? { ...rest, extraHosts: rest.extraHosts.map((h) => ({ host: h.host, ip: '' })) } : rest;
    const keys: string[] = [];
    const files = new FileList();
    const keyedInputs: NonNullable<KeyIngredients['inputs']> = [];
    for (const [i, input] of inputs.entries()) {
      const sources = bindSources(op, i);
      if (input.kind === 'local') {
        keys.push(await this.checksumPaths(input.dir, sources, input.filter, false, files));
      } else if (byContent && sources.length > 0) {
        keys.push(await this.withView(input.layers, (dir) => this.checksumPaths(dir, sources, undefined, true, files)));
      } else {
        keys.push(input.cacheKey);
        keyedInputs.push(this.keyedInput(v, i, input.cacheKey));
      }
    }
    await this.opts.statCache.save();
    const key = sha256(canonicalJson({ op: keyed, inputs: keys, ...(byContent ? { byContent } : {}), ...this.epoch() }));
    const fields: Record<string, string> = { args: JSON.stringify(op.args), cwd: op.cwd, user: op.user, network: op.network, ...this.epoch() };
    if (op.security) fields.security = op.security;
    if (op.scripts) fields.scripts = valueDigest(canonicalJson(op.scripts));
    if (op.mounts) fields.mounts = canonicalJson(op.mounts);
    if (op.extraHosts) fields.extraHosts = op.extraHosts.map((h) => h.host).join(',');
    if (op.ulimits) fields.ulimits = op.ulimits.map((u) => `${u.name}=${u.soft}:${u.hard}`).join(',');
    if (op.shmSize !== undefined) fields.shmSize = String(op.shmSize);
    const env: Record<string, string> = {};
    for (const entry of op.env) {
      const eq = entry.indexOf('=');
      env[eq < 0 ? entry : entry.slice(0, eq)] = valueDigest(eq < 0 ? '' : entry.slice(eq + 1));
    }
    return { key, ingredients: { op: fields, env, inputs: keyedInputs }, files };
  }

  /** Input `i` of `v`, counted by its cache key: input 0 is the parent filesystem. */
  private keyedInput(v: Vertex, i: number, key: Digest): NonNullable<KeyIngredients['inputs']>[number] {
    const input = v.inputs[i];
    const name = (input !== undefined && this.def.vertices.get(input)?.meta.name) || 'scratch';
    return { role: i === 0 ? 'parent' : 'source', name, key };
  }

  /** The checksum of bind mount sources `paths` (root-relative, literal; each must exist) in `root`. */
  private async checksumPaths(root: string, paths: string[], filter: SourceFilter | undefined, includeOwners: boolean, files: FileList): Promise<Digest> {
    const selected = await selectSources(root, paths, filter, { literal: true });
    return checksumSources(root, selected, { ...filter, statCache: this.opts.statCache, includeOwners, onEntry: files.add });
  }

  private async runExec(digest: Digest, v: Vertex, op: ExecOp, parent: LayerRecord[], inputs: SolvedResult[]): Promise<LayerRecord[]> {
    this.opts.executor.willRun?.();
    // Unpacked before the step starts: a base layer that fails to unpack is its FROM's failure.
    await this.ensureSnapshot(parent);
    for (const input of inputs.slice(1)) if (input.kind === 'layers') await this.ensureSnapshot(input.layers);
    const facilities: MountFacilities = {
      withFilesystem: (layers, writable, fn) => this.withFilesystem(layers, writable, fn),
      cacheMounts: this.opts.cacheMounts,
      secrets: this.opts.secrets,
      ssh: this.opts.ssh,
      signal: this.opts.signal,
    };
    return this.run(digest, v, 'container', () =>
      this.mutate(parent, { diffSlot: true }, (rootfs) =>
        withExecMounts(op, inputs, facilities, async ({ mounts, secretEnv, secretValues }) => {
          // What the step prints shows any secret it can see as ***.
          const output = new StepOutput(digest, this.opts.progress, this.opts.stepLogLimit, secretValues);
          const cleanup = await writeScripts(rootfs, op.scripts ?? []);
          const result = await this.opts.executor.run({
            rootfs,
            args: op.args,
            env: op.proxyEnv ? [...op.env, ...op.proxyEnv] : op.env,
            cwd: op.cwd,
            user: op.user,
            network: op.network,
            ...(op.security ? { security: op.security } : {}),
            ...(mounts.length > 0 ? { mounts } : {}),
            ...(secretEnv.length > 0 ? { secretEnv } : {}),
            ...(op.extraHosts ? { extraHosts: op.extraHosts } : {}),
            ...(op.ulimits ? { ulimits: op.ulimits } : {}),
            ...(op.shmSize !== undefined ? { shmSize: op.shmSize } : {}),
            stdout: (chunk) => output.write('stdout', chunk),
            stderr: (chunk) => output.write('stderr', chunk),
            signal: this.opts.signal,
          }).finally(async () => {
            output.end();
            await cleanup();
          });
          if (result.exitCode !== 0) {
            const how = result.signal ? `killed by signal ${result.signal}` : `exit code: ${result.exitCode}`;
            // The command is in the step's name already: a long one is not repeated.
            throw new StepError(v.meta, `process did not complete successfully: ${how}`, output.lastLines());
          }
        }),
      ),
    );
  }

  private async solveFile(digest: Digest, v: Vertex, op: FileOp, inputs: SolvedResult[]): Promise<SolvedResult> {
    const dest = layersInput(inputs[0], v);
    const byContent = fileByContent(op, inputs);
    const computed: Keyed[] = [];
    const key = async (content: boolean) => {
      const keyed = await this.fileCacheKey(v, op, inputs, dest.cacheKey, content);
      computed.push(keyed);
      return keyed;
    };
    try {
      return await this.solveKeyed(digest, v, byContent, key, (keyed) => this.runFile(digest, v, op, inputs, dest.layers, keyed.walks));
    } finally {
      // The walks hold an entry for every context file: let them go once the step is done, hit or miss.
      for (const keyed of [...computed, (await this.stubs.get(digest))?.keyed]) keyed?.walks?.clear();
    }
  }

  /**
   * Looks a step up by `key(false)`, its key from the definition (inputs by cache key); when
   * `byContent`, a miss there is looked up again by `key(true)`, inputs from other stages by the
   * content the step reads, so a rebuilt stage with identical output still hits. The result is
   * recorded under both keys.
   */
  private async solveKeyed(
    digest: Digest,
    v: Vertex,
    byContent: boolean,
    key: (byContent: boolean) => Promise<Keyed>,
    miss: (keyed: Keyed) => Promise<LayerRecord[]>,
  ): Promise<SolvedResult> {
    // Computed already when the step was looked up before its inputs were solved.
    const definition = (await this.stubs.get(digest))?.keyed ?? (await this.keyOrStepError(digest, v, () => key(false)));
    const definitionKey = definition.key;
    if (this.opts.explainOnly) {
      const cached = await this.lookup(definitionKey);
      return cached ? this.cachedResult(digest, v, definitionKey, cached) : this.wouldRun(digest, v, definition);
    }
    if (byContent) {
      const cached = await this.lookup(definitionKey);
      // Not recorded: the ingredients by content, recorded when it last missed, explain its next
      // miss (which is by content) better than these would.
      if (cached) {
        this.keyed.set(digest, { keys: [definitionKey], layers: cached });
        return this.cachedResult(digest, v, definitionKey, cached);
      }
    }
    // By content, a miss names the files that differ rather than the stage that re-ran.
    const content = byContent ? await this.keyOrStepError(digest, v, () => key(true)) : definition;
    const { layers, ran } = await this.once(content.key, v.meta.name, () => this.explained(digest, v, content, () => miss(content)));
    this.keyed.set(digest, { keys: [...new Set([definitionKey, content.key])], layers });
    if (content.key !== definitionKey) await this.opts.cache.set(definitionKey, layers);
    await this.recordIngredients(v, content);
    return ran ? { kind: 'layers', cacheKey: definitionKey, layers } : this.cachedResult(digest, v, definitionKey, layers);
  }

  /**
   * Runs `miss`, a step that is not in the cache, after noting why: the first ingredient of its
   * key that differs from the key its position had last time (see explain.ts).
   */
  private async explained<T>(digest: Digest, v: Vertex, keyed: Keyed, miss: () => Promise<T>): Promise<T> {
    const reason = await this.missReason(v, keyed, 're-ran');
    if (reason) this.reasons.set(digest, reason);
    this.ranSteps.add(v.meta.name);
    return miss();
  }

  /** With explainOnly: notes that `v` would run, and why; its result has no layers. */
  private async wouldRun(digest: Digest, v: Vertex, keyed: Keyed, reason?: string): Promise<SolvedResult> {
    if (!v.meta.hidden) {
      const why = reason ?? (await this.missReason(v, keyed, 'would re-run'));
      this.forecasts.set(digest, { name: v.meta.name, file: v.meta.file, line: v.meta.startLine, cached: false, ...(why ? { reason: why } : {}) });
    }
    this.ranSteps.add(v.meta.name);
    return { kind: 'layers', cacheKey: keyed.key, layers: [] };
  }

  private async missReason(v: Vertex, keyed: Keyed, reRan: string): Promise<string | undefined> {
    if (this.opts.noCache) return '--no-cache';
    const position = this.position(v);
    if (!position) return undefined;
    const previous = await this.opts.cache.lastIngredients(position);
    return explainMiss(previous, { key: keyed.key, name: v.meta.name, ...keyed.ingredients, ...keyed.files?.result() }, (name) => (this.ranSteps.has(name) ? reRan : undefined));
  }

  /** Records what `v`'s key was made of, for explaining its next miss. */
  private async recordIngredients(v: Vertex, keyed: Keyed): Promise<void> {
    const position = this.position(v);
    if (!position) return;
    const last = await this.opts.cache.lastIngredients(position);
    if (last?.key === keyed.key) return;
    await this.opts.cache.recordIngredients(position, { key: keyed.key, name: v.meta.name, ...keyed.ingredients, ...keyed.files?.result() }, last);
  }

  /**
   * Where `v` sits across builds: its Dockerfile position and the directories its build reads
   * (two projects' `Dockerfile`s have the same positions). Undefined for internal steps.
   */
  private position(v: Vertex): string | undefined {
    if (!v.meta.position) return undefined;
    return canonicalJson({ dirs: Object.values(this.opts.localDirs).sort(), file: this.opts.dockerfilePath ?? v.meta.file ?? '', position: v.meta.position });
  }

  private async runFile(digest: Digest, v: Vertex, op: FileOp, inputs: SolvedResult[], dest: LayerRecord[], walks?: ReadonlyMap<string, Iterable<WalkEntry>>): Promise<LayerRecord[]> {
    // As for RUN: the destination's and the sources' layers are unpacked before the step starts.
    await this.ensureSnapshot(dest);
    for (const action of op.actions) {
      const src = action.action === 'copy' ? inputs[action.sourceInput] : undefined;
      if (src?.kind === 'layers') await this.ensureSnapshot(src.layers);
    }
    const incremental = await this.incrementalCopy(v, op, inputs, dest);
    let written: WrittenLayer | undefined;
    const layers = await this.run(digest, v, 'cpu', () =>
      this.mutate(
        dest,
        {
          layer: incremental && {
            // The linked files' content is the earlier layer's: the new layer copies it from there.
            unmounted: (dir) => ({ earlier: earlierLayer(incremental.earlier, incremental.earlier.reuse.finish(dir, writeCopiedFile)), index: true }),
            written: (layer) => (written = layer),
          },
        },
        async (rootfs) => {
          for (const action of op.actions) {
            if (action.action === 'mkdir') {
              const owner = action.chown ? await resolveOwner(rootfs, action.chown) : { uid: 0, gid: 0 };
              await mkdirAll(rootfs, action.path, action.mode, owner);
            } else if (action.action === 'mkfile') {
              const owner = action.chown ? await resolveOwner(rootfs, action.chown) : { uid: 0, gid: 0 };
              await makeFile(rootfs, action.path, action.data, action.mode, owner);
            } else {
              await this.copy(action, inputs, rootfs, v, incremental?.earlier.reuse, walks);
            }
          }
        },
      ),
    );
    if (incremental && written) {
      await recordCopy(incremental.history, incremental.family, chainIDs(layers.map((l) => l.diffID)).at(-1)!, incremental.earlier.reuse, written);
    }
    return layers;
  }

  /**
   * A COPY of the build context alone (one copy action, no archive extraction) re-uses the
   * unchanged files of its step's earlier result on the same parent (see copy-history.ts).
   */
  private async incrementalCopy(v: Vertex, op: FileOp, inputs: SolvedResult[], dest: LayerRecord[]) {
    const action = op.actions[0];
    const position = this.position(v);
    if (this.opts.noCache || !position || op.actions.length !== 1 || action?.action !== 'copy' || action.unpack) return undefined;
    const src = inputs[action.sourceInput];
    if (src?.kind !== 'local') return undefined;
    const history: CopyHistory = { cache: this.opts.cache, snapshotter: this.opts.snapshotter, position };
    const parent = dest.length > 0 ? chainIDs(dest.map((l) => l.diffID)).at(-1) : undefined;
    const family = copyFamily(op, src.dir, parent);
    return { history, family, earlier: await earlierCopy(history, family, parent) };
  }

  /**
   * A cache key that cannot be computed (a COPY source that is not there) fails the step, which is
   * reported and named like any step that fails while running, as BuildKit's "failed to compute
   * cache key".
   */
  private async keyOrStepError<T>(digest: Digest, v: Vertex, key: () => Promise<T>): Promise<T> {
    try {
      return await key();
    } catch (err) {
      // A base layer that fails to unpack is its FROM's failure, reported already.
      if (err instanceof StepError || (err as Error).name === 'AbortError') throw err;
      const reason = `failed to compute cache key: ${(err as Error).message}`;
      const { hidden, ...step } = this.step(digest, v);
      if (!hidden) this.opts.progress({ type: 'step', ...step, status: 'error', at: Date.now(), error: reason });
      throw new StepError(v.meta, reason, [], { cause: err });
    }
  }

  /**
   * The cache key of a file op. Context sources always count by content (the definition does not
   * capture them); stage sources count by cache key, or by content when `byContent`.
   */
  private async fileCacheKey(v: Vertex, op: FileOp, inputs: SolvedResult[], destKey: Digest, byContent: boolean): Promise<Keyed> {
    const sources: string[] = [];
    const files = new FileList();
    // One copy action: its copy selects what the key walked (the same sources and filter), and
    // can take the walk's entries instead of walking the context again.
    const walks = op.actions.length === 1 ? new Map<string, KeptWalk>() : undefined;
    const keyedInputs = [this.keyedInput(v, 0, destKey)];
    for (const action of op.actions) {
      if (action.action !== 'copy') continue;
      const src = inputs[action.sourceInput];
      if (!src) throw new Error(`copy source input ${action.sourceInput} missing`);
      if (src.kind === 'local') {
        const { selected, filter } = await selectWithExclude(src.dir, action, src.filter);
        sources.push(await checksumSources(src.dir, selected, { ...filter, statCache: this.opts.statCache, includeOwners: false, onEntry: files.add, keepWalks: walks }));
      } else if (byContent) {
        sources.push(await this.withView(src.layers, async (dir) => {
          const { selected, filter } = await selectWithExclude(dir, action, undefined);
          return checksumSources(dir, selected, { ...filter, statCache: this.opts.statCache, includeOwners: true, onEntry: files.add });
        }));
      } else {
        sources.push(src.cacheKey);
        keyedInputs.push(this.keyedInput(v, action.sourceInput, src.cacheKey));
      }
    }
    await this.opts.statCache.save();
    const key = sha256(canonicalJson({ op, dest: destKey, sources, byContent, ...this.epoch() }));
    // What a file's data says is compared by digest: a heredoc may hold anything.
    const actions = op.actions.map((a) => (a.action === 'mkfile' ? { ...a, data: valueDigest(a.data) } : a));
    return { key, ingredients: { op: { actions: canonicalJson(actions), ...this.epoch() }, inputs: keyedInputs }, files, ...(walks?.size && { walks }) };
  }

  /**
   * SOURCE_DATE_EPOCH clamps the times in the layers steps make (see diff.ts): a step's layer
   * made without it, or with another value, is another layer, so the value is part of the key
   * (and of the ingredients that explain a miss) of every step that makes one. Builds without it
   * keep the keys they always had.
   */
  private epoch(): { sourceDateEpoch?: string } {
    const epoch = this.opts.sourceDateEpoch;
    return epoch === undefined ? {} : { sourceDateEpoch: String(epoch) };
  }

  private async copy(
    action: CopyAction,
    inputs: SolvedResult[],
    rootfs: string,
    v: Vertex,
    reuse?: CopyReuse,
    walks?: ReadonlyMap<string, Iterable<WalkEntry>>,
  ): Promise<void> {
    const src = inputs[action.sourceInput];
    if (!src) throw new Error(`copy source input ${action.sourceInput} missing`);
    const owner: Owner | undefined = action.chown
      ? await resolveOwner(rootfs, action.chown)
      : src.kind === 'local'
        ? { uid: 0, gid: 0 }
        : undefined;
    const doCopy = async (srcRoot: string, baseFilter: SourceFilter | undefined) => {
      let sources: Source[];
      let filter: SourceFilter | undefined;
      try {
        ({ selected: sources, filter } = await selectWithExclude(srcRoot, action, baseFilter));
      } catch (err) {
        throw new StepError(v.meta, `failed to compute cache key: ${(err as Error).message}`, [], { cause: err });
      }
      await copyAction(action, { srcRoot, sources, filter, destRoot: rootfs, owner, reuse, walks: src.kind === 'local' ? walks : undefined });
    };
    if (src.kind === 'local') await doCopy(src.dir, src.filter);
    else await this.withView(src.layers, (dir) => doCopy(dir, undefined));
  }

  /**
   * The layers for cache key `key`: from the cache index, or made by `miss` and recorded there.
   * Vertices that differ but share a cache key (one download with and without --checksum, COPY
   * of identical files from two stages) run `miss` once per build: the others wait for it and
   * reuse its layers, as a cache hit (`ran` is false for them). Across builds sharing the state
   * directory, the key is claimed while `miss` runs: a build that misses it meanwhile waits for
   * the record, as BuildKit's solver shares a vertex between concurrent builds.
   */
  private once(key: Digest, step: string, miss: () => Promise<LayerRecord[]>): Promise<{ layers: LayerRecord[]; ran: boolean }> {
    let pending = this.byCacheKey.get(key);
    if (pending) return pending.then(({ layers }) => ({ layers, ran: false }));
    pending = (async () => {
      const cached = await this.lookup(key);
      if (cached) return { layers: cached, ran: false };
      const onWait = (pid: number) => this.opts.progress({ type: 'warning', message: `${step}: the same step is running in another build (PID ${pid}); waiting for its result` });
      const letGo = this.opts.noCache ? undefined : await this.opts.cache.claim(key, { signal: this.opts.signal, onWait });
      try {
        const madeMeanwhile = letGo && (await this.lookup(key));
        if (madeMeanwhile) return { layers: madeMeanwhile, ran: false };
        const layers = await miss();
        await this.opts.cache.set(key, layers);
        return { layers, ran: true };
      } finally {
        await letGo?.();
      }
    })();
    this.byCacheKey.set(key, pending);
    return pending;
  }

  private async lookup(key: Digest): Promise<LayerRecord[] | undefined> {
    if (this.opts.noCache) return undefined;
    const record = await this.opts.cache.get(key, { peek: this.opts.explainOnly });
    // A record whose blobs were pruned is a miss, not a broken build.
    if (record && (await this.haveBlobs(record.layers))) return record.layers;
    const imported = await this.opts.importedCache?.lookup(key);
    if (imported) {
      this.importedHits.set(key, imported);
      await this.recordImported();
    }
    return imported;
  }

  /**
   * Records imported hits in the local cache index once all their blobs are here, so later builds
   * hit without the import; never before (a record must name content the store has).
   */
  private async recordImported(): Promise<void> {
    for (const [key, layers] of this.importedHits) {
      if (!(await this.haveBlobs(layers))) continue;
      this.importedHits.delete(key);
      await this.opts.cache.set(key, layers);
    }
  }

  /** Whether the content store has every blob of `layers`. */
  private async haveBlobs(layers: LayerRecord[]): Promise<boolean> {
    for (const layer of layers) if (!(await this.opts.store.has(layer.digest))) return false;
    return true;
  }

  private cachedResult(digest: Digest, v: Vertex, cacheKey: Digest, layers: LayerRecord[]): SolvedResult {
    if (!v.meta.hidden) this.opts.progress({ type: 'step', ...this.step(digest, v), status: 'cached', at: Date.now() });
    if (!v.meta.hidden && this.opts.explainOnly) this.forecasts.set(digest, { name: v.meta.name, file: v.meta.file, line: v.meta.startLine, cached: true });
    return { kind: 'layers', cacheKey, layers };
  }

  /** Runs a step's work in a slot of its kind, reported as the step; any failure becomes a StepError. */
  private async run<T>(digest: Digest, v: Vertex, kind: StepKind, work: () => Promise<T>): Promise<T> {
    return this.scheduler.step(kind, async () => {
      this.opts.signal?.throwIfAborted();
      const { hidden, ...step } = this.step(digest, v);
      try {
        // The step is named already: its error line says what went wrong (BuildKit's `#5 ERROR: …`).
        return await track(hidden ? () => undefined : this.opts.progress, step, work, (err) => (err instanceof StepError ? err.reason : (err as Error).message));
      } catch (err) {
        // The cause stays: callers tell a registry's refusal from a failed command by it.
        throw err instanceof StepError || (err as Error).name === 'AbortError' ? err : new StepError(v.meta, (err as Error).message, [], { cause: err });
      }
    });
  }

  /**
   * Runs `change` on a writable snapshot on top of `parent` (then `layer.unmounted` on the snapshot's
   * own directory, once unmounted, which may tell the layer write more), then records the
   * difference as a new layer (told to `layer.written`). The snapshot becomes the committed
   * snapshot of the new chain, so the next step reuses it.
   */
  private async mutate(
    parent: LayerRecord[],
    opts: {
      diffSlot?: boolean;
      layer?: { unmounted: (dir: string) => Omit<WriteLayerOptions, 'sourceDateEpoch'>; written: (layer: WrittenLayer) => void } | undefined;
    },
    change: (rootfs: string) => Promise<void>,
  ): Promise<LayerRecord[]> {
    const sn = this.opts.snapshotter;
    const parentChain = await this.ensureSnapshot(parent);
    const key = `active-${randomBytes(8).toString('hex')}`;
    const mounts = await sn.prepare(key, parentChain);
    let committed = false;
    try {
      await this.mounted(mounts, change);
      this.opts.signal?.throwIfAborted();
      const layout = await sn.layout(key);
      let extra: Omit<WriteLayerOptions, 'sourceDateEpoch'> = {};
      if (opts.layer) {
        await settleUnmount(layout.dir);
        extra = opts.layer.unmounted(layout.dir);
      }
      const diff = async () => writeLayer(layout, this.opts.store, { ...extra, sourceDateEpoch: this.opts.sourceDateEpoch });
      // A step that holds no cpu slot (a container's) takes one to diff.
      const layer = opts.diffSlot ? await this.scheduler.cpu(diff) : await diff();
      opts.layer?.written(layer);
      // A step that changed nothing still adds its (empty) layer, as in BuildKit's images.
      const { empty: _empty, index: _index, usage, ...written } = layer;
      const layers = [...parent, { ...written, createdAt: new Date().toISOString() }];
      committed = await this.commit(chainID(parentChain, written.diffID), key, usage);
      return layers;
    } finally {
      if (!committed) await sn.remove(key).catch(() => undefined);
    }
  }

  /**
   * Commits active snapshot `key` as `chain`, the ChainID of its layers; false when `chain` was
   * committed already (another step made the same layers, or unpacked them, meanwhile): a ChainID
   * names content, so that snapshot serves as well, and `key` is left for the caller to remove.
   */
  private async commit(chain: string, key: string, usage?: Usage): Promise<boolean> {
    try {
      await this.opts.snapshotter.commit(chain, key, usage && { usage });
      return true;
    } catch (err) {
      if (err instanceof SnapshotExistsError) return false;
      throw err;
    }
  }

  /** Makes sure the committed snapshot of `layers` exists, unpacking missing layers; returns its name. */
  private async ensureSnapshot(layers: LayerRecord[]): Promise<string | undefined> {
    if (layers.length === 0) return undefined;
    const { snapshotter: sn, store } = this.opts;
    const chain = chainIDs(layers.map((l) => l.diffID));
    for (let i = 0; i < layers.length; i++) {
      const name = chain[i]!;
      let pending = this.snapshots.get(name);
      if (!pending) {
        const layer = layers[i]!;
        const parent = i > 0 ? chain[i - 1] : undefined;
        pending = (async () => {
          if (await sn.stat(name)) return;
          // A lazily pulled or imported blob is fetched now that its bytes are needed.
          await this.fetchBlobs([layer]);
          await this.unpackLayer(name, parent, layer, store.read(layer.digest));
        })();
        this.unpacking(name, pending);
      }
      await pending;
    }
    return chain.at(-1);
  }

  /** Remembers the unpack under way of snapshot `name`, forgotten if it fails (a later step tries again). */
  private unpacking(name: string, pending: Promise<void>): void {
    this.snapshots.set(name, pending);
    pending.catch(() => this.snapshots.delete(name));
  }

  /**
   * A pull unpacks its layers while it downloads them: each in order, as soon as its bytes and
   * the layer below are there, in one pass from the socket into the store and the snapshot when
   * the layer below is complete as its download starts. A later step finds them under way.
   */
  private readonly unpackWhilePulling: PullUnpacker = {
    accept: (layers) => {
      const chain = chainIDs(layers.map((l) => l.diffID));
      let below: Promise<void> | undefined;
      return layers.map((layer, i) => {
        const name = chain[i]!;
        const underWay = this.snapshots.get(name);
        if (underWay) {
          below = underWay;
          return undefined;
        }
        const unpack = this.layerUnpack(name, i > 0 ? chain[i - 1] : undefined, layer, below);
        this.unpacking(name, unpack.done);
        below = unpack.done;
        return unpack;
      });
    },
  };

  /** The unpack of `layer` as snapshot `name`, once its bytes are given and `below` (the unpack of its parent) is done. */
  private layerUnpack(name: string, parent: string | undefined, layer: LayerRecord, below: Promise<void> | undefined): LayerUnpack {
    let give!: LayerUnpack['give'];
    let fail!: LayerUnpack['fail'];
    const given = new Promise<{ blob: Readable; stored: Promise<unknown> }>((resolve, reject) => {
      give = (blob, stored) => {
        // A download stopped by Ctrl-C errors this stream, maybe before the unpack reads it (it
        // waits for the layer below and the snapshotter): unheard, that error would end the
        // process. The unpack, once reading, hears it as well.
        blob.on('error', () => undefined);
        resolve({ blob, stored });
      };
      fail = reject;
    });
    let ready = below === undefined;
    below?.then(
      () => (ready = true),
      () => (ready = true),
    );
    const done = (async () => {
      const { blob, stored } = await given;
      try {
        await below;
        // Made meanwhile (by an earlier build, or another image with these layers).
        if (await this.opts.snapshotter.stat(name)) return void blob.destroy();
      } catch (err) {
        blob.destroy();
        throw err;
      }
      await this.unpackLayer(name, parent, layer, blob, stored);
    })();
    return {
      get ready() {
        return ready;
      },
      give,
      fail,
      done,
    };
  }

  /**
   * Unpacks `layer` from `blob` on top of committed snapshot `parent` and commits it as `name`.
   * A download unpacked as it arrives passes `stored`: the snapshot is committed only once the
   * blob is verified and stored; on any failure it is removed.
   */
  private async unpackLayer(name: string, parent: string | undefined, layer: LayerRecord, blob: Readable, stored?: Promise<unknown>): Promise<void> {
    await unpackLayer(this.opts.snapshotter, name, parent, layer, blob, { stored, signal: this.opts.signal }).catch((err: unknown) => {
      throw this.unpackError(layer, err);
    });
  }

  /**
   * A base layer that cannot be unpacked (hostile entries, a corrupt tar) fails the FROM step that
   * pulled it, whichever later step needed the snapshot first: that step is reported as failed,
   * and the error names the image and the layer.
   */
  private unpackError(layer: LayerRecord, err: unknown): unknown {
    if ((err as Error).name === 'AbortError') return err;
    const text = (err as Error).message;
    const reason = text.startsWith(`layer ${layer.digest}: `) ? text.slice(`layer ${layer.digest}: `.length) : text;
    const message = `failed to unpack layer ${layer.digest}: ${reason}`; // the step's name names the image
    const origin = this.layerOrigins.get(layer.digest);
    // Unpacked while pulled: the FROM step running the pull reports it as its own failure.
    if (!origin) return new Error(message);
    const { hidden, ...step } = this.step(origin.digest, origin.v);
    if (!hidden) this.opts.progress({ type: 'step', ...step, status: 'error', at: Date.now(), error: message });
    return new StepError(origin.v.meta, message, [], { cause: err });
  }

  /** Runs `fn` on the filesystem of `layers`: read-only, or a writable copy that is thrown away. */
  private async withFilesystem<T>(layers: LayerRecord[], writable: boolean, fn: (dir: string) => Promise<T>): Promise<T> {
    if (!writable) return this.withView(layers, fn);
    const sn = this.opts.snapshotter;
    const parent = await this.ensureSnapshot(layers);
    const key = `scratch-${randomBytes(8).toString('hex')}`;
    const mounts = await sn.prepare(key, parent);
    try {
      return await withMounts(mounts, fn);
    } finally {
      await sn.remove(key).catch(() => undefined);
    }
  }

  /** Runs `fn` with the filesystem of `layers` mounted read-only. */
  private async withView<T>(layers: LayerRecord[], fn: (dir: string) => Promise<T>): Promise<T> {
    if (layers.length === 0) {
      const empty = await mkdtemp(join(tmpdir(), 'builder-empty-'));
      try {
        return await fn(empty);
      } finally {
        await rm(empty, { recursive: true, force: true });
      }
    }
    const sn = this.opts.snapshotter;
    const parent = await this.ensureSnapshot(layers);
    const key = `view-${randomBytes(8).toString('hex')}`;
    const mounts = await sn.view(key, parent);
    try {
      return await this.mounted(mounts, fn);
    } finally {
      await sn.remove(key).catch(() => undefined);
    }
  }

  /** Runs `fn` on a snapshot's mounts. A step's snapshot is unmounted while it is diffed; commit and remove wait for the unmount. */
  private mounted<T>(mounts: Mount[], fn: (dir: string) => Promise<T>): Promise<T> {
    return withMounts(mounts, fn, { deferUnmount: true });
  }
}

/** Whether a RUN's key counts a stage it bind-mounts by content (after a miss by key). */
function execByContent(op: ExecOp, inputs: SolvedResult[]): boolean {
  return inputs.some((input, i) => input.kind === 'layers' && bindSources(op, i).length > 0);
}

/**
 * Whether a file op's key counts what it copies by content (after a miss by key): when it copies
 * from another stage. The destination counts by its key either way, and the build context by
 * content always, so a copy of the context alone would only walk the context a second time.
 */
function fileByContent(op: FileOp, inputs: SolvedResult[]): boolean {
  return op.actions.some((a) => a.action === 'copy' && inputs[a.sourceInput]?.kind === 'layers');
}

/** A scratch filesystem: no layers. */
function scratchResult(op: ScratchOp): SolvedResult {
  return { kind: 'layers', cacheKey: sha256(canonicalJson({ op })), layers: [] };
}

function imageCacheKey(op: ImageOp): Digest {
  return sha256(canonicalJson({ op }));
}

/** A download's key: its file name and content digest (known up front from a checksum). */
function httpCacheKey(filename: string, checksum: Digest): Digest {
  return sha256(canonicalJson({ op: { type: 'http', filename, checksum } }));
}

/** `root` and those of its ancestors for which `done` is false, each after its inputs (iterative). */
function postorder(def: Definition, root: Digest, done: (d: Digest) => boolean): Digest[] {
  const order: Digest[] = [];
  const seen = new Set<Digest>([root]);
  const frames = [{ digest: root, next: 0 }];
  while (frames.length > 0) {
    const frame = frames[frames.length - 1] as (typeof frames)[number];
    const input = def.vertices.get(frame.digest)?.inputs[frame.next++];
    if (input === undefined) {
      frames.pop();
      order.push(frame.digest);
    } else if (!seen.has(input) && !done(input)) {
      seen.add(input);
      frames.push({ digest: input, next: 0 });
    }
  }
  return order;
}

/** `root` and every vertex it depends on (iterative: a chain of steps is as deep as the Dockerfile is long). */
function ancestry(def: Definition, root: Digest): Set<Digest> {
  const seen = new Set<Digest>([root]);
  const todo = [root];
  for (let d = todo.pop(); d !== undefined; d = todo.pop()) {
    for (const input of def.vertices.get(d)?.inputs ?? []) {
      if (!seen.has(input)) {
        seen.add(input);
        todo.push(input);
      }
    }
  }
  return seen;
}

function layersInput(input: SolvedResult | undefined, v: Vertex): { cacheKey: Digest; layers: LayerRecord[] } {
  if (!input || input.kind !== 'layers') throw new StepError(v.meta, 'input 0 must be a filesystem');
  return input;
}
