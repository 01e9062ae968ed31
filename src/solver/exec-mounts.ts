// RUN --mount on the solver's side: turning an exec op's mounts (plain data in the Definition)
// into what the executor mounts (host directories, files, sockets), for the run only, and letting
// go of all of it afterwards. Bind sources are resolved inside the filesystem they come from;
// secrets and SSH agents come from the providers the build was given, never from the definition.

import { lstat } from 'node:fs/promises';
import type { BindMount, CacheMount, ExecMount, ExecOp, SecretMount, SshMount } from '../definition/index.js';
import type { LayerRecord } from '../cache/cache-index.js';
import type { ContainerMount } from '../executor/runc.js';
import { resolveInRoot } from '../util/scoped-path.js';
import { cleanSourcePath, selectSources, SourceNotFoundError } from '../util/select.js';
import { copySources } from './file/copy.js';
import type { CacheMountStore, SecretProvider, SolvedResult, SshProvider } from './solver.js';

/** What the solver lends the mounts of one run. */
export interface MountFacilities {
  /** Runs `fn` on the filesystem of `layers`: read-only, or a writable copy thrown away afterwards. */
  withFilesystem<T>(layers: LayerRecord[], writable: boolean, fn: (dir: string) => Promise<T>): Promise<T>;
  cacheMounts?: CacheMountStore;
  secrets?: SecretProvider;
  ssh?: SshProvider;
  signal?: AbortSignal;
}

/** The mounts of one run, ready for the executor. */
export interface PreparedMounts {
  mounts: ContainerMount[];
  /** `K=V` for secrets exposed as environment variables. */
  secretEnv: string[];
  /** Every secret value the run can see, to mask in its output. */
  secretValues: Buffer[];
}

/** A mount that cannot be set up as asked (a missing required secret or bind source). */
export class MountError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MountError';
  }
}

/** The sources that bind mounts read from input `index` of `op`, as root-relative paths. */
export function bindSources(op: ExecOp, index: number): string[] {
  return (op.mounts ?? []).filter((m): m is BindMount => m.type === 'bind' && m.input === index).map((m) => cleanSourcePath(m.source));
}

/**
 * Sets up `op`'s mounts, runs `fn` with them, and always lets go of them (unmounts, cache locks,
 * throwaway copies), in reverse order.
 */
export async function withExecMounts<T>(op: ExecOp, inputs: SolvedResult[], f: MountFacilities, fn: (prepared: PreparedMounts) => Promise<T>): Promise<T> {
  // Parents before children: a mount under another mount's target must come after it.
  const mounts = [...(op.mounts ?? [])].sort((a, b) => depth(a) - depth(b));
  const prepared: PreparedMounts = { mounts: [], secretEnv: [], secretValues: [] };
  // Two mounts of one cache (same id and seed) in a step share one lease: acquiring it twice
  // would wait for itself when locked, and give two directories when private.
  const caches = new Map<string, string>();
  const next = async (i: number): Promise<T> => {
    const m = mounts[i];
    if (!m) return fn(prepared);
    switch (m.type) {
      case 'bind':
        return withBindSource(m, inputs[m.input], f, (source) => {
          prepared.mounts.push({ type: 'bind', target: m.target, source, readonly: m.readonly });
          return next(i + 1);
        });
      case 'cache': {
        const mount = (dir: string) => {
          prepared.mounts.push({ type: 'bind', target: m.target, source: dir, readonly: m.readonly });
          return next(i + 1);
        };
        const seed = cacheSeed(m, inputs);
        const key = JSON.stringify([m.id, seed?.key]);
        const held = caches.get(key);
        if (held !== undefined) return mount(held);
        return withCacheDir(m, seed, f, (dir) => {
          caches.set(key, dir);
          return mount(dir);
        });
      }
      case 'tmpfs':
        prepared.mounts.push({ type: 'tmpfs', target: m.target, ...(m.size !== undefined ? { size: m.size } : {}) });
        return next(i + 1);
      case 'secret':
        await addSecret(m, f, prepared);
        return next(i + 1);
      case 'ssh':
        addSsh(m, f, prepared);
        return next(i + 1);
    }
  };
  return next(0);
}

function depth(m: ExecMount): number {
  return m.target === undefined ? 0 : m.target.split('/').filter(Boolean).length;
}

/**
 * The host path of a bind mount's source. From the build context, the selection (after
 * `.dockerignore`) is copied into a throwaway directory first: the context itself is never
 * mounted, so neither ignored files nor the user's own files can be reached or changed.
 */
async function withBindSource<T>(m: BindMount, input: SolvedResult | undefined, f: MountFacilities, fn: (source: string) => Promise<T>): Promise<T> {
  if (!input) throw new Error(`bind mount at ${m.target}: input ${m.input} missing`);
  const source = cleanSourcePath(m.source);
  if (input.kind === 'local') {
    return f.withFilesystem([], true, async (dir) => {
      // At the same path as in the context, owned by root as COPY makes it.
      const sources = await selectSources(input.dir, [source], input.filter, { literal: true });
      await copySources({ srcRoot: input.dir, sources, filter: input.filter, destRoot: dir, dest: '/', owner: { uid: 0, gid: 0 }, parents: true });
      return fn(await existingPath(dir, source));
    });
  }
  return f.withFilesystem(input.layers, !m.readonly, async (dir) => fn(await existingPath(dir, source)));
}

/** `path` resolved inside `root`; a MountError when nothing is there. */
async function existingPath(root: string, path: string): Promise<string> {
  const host = await resolveInRoot(root, path);
  if (!(await lstat(host).catch(() => undefined))) throw new MountError(`failed to compute cache key: ${new SourceNotFoundError(path).message}`);
  return host;
}

interface CacheSeed {
  /** Tells caches of one id seeded differently apart: the seed's cache key and path. */
  key: string;
  layers: LayerRecord[];
  source: string;
}

function cacheSeed(m: CacheMount, inputs: SolvedResult[]): CacheSeed | undefined {
  const input = m.input === undefined ? undefined : inputs[m.input];
  if (input?.kind !== 'layers') return undefined;
  const source = cleanSourcePath(m.source ?? '/');
  return { key: `${input.cacheKey}:${source}`, layers: input.layers, source };
}

async function withCacheDir<T>(m: CacheMount, seed: CacheSeed | undefined, f: MountFacilities, fn: (dir: string) => Promise<T>): Promise<T> {
  if (!f.cacheMounts) throw new MountError(`cache mount at ${m.target}: this build has no place for cache mounts`);
  const lease = await f.cacheMounts.acquire({
    id: m.id,
    sharing: m.sharing,
    mode: m.mode,
    uid: m.uid,
    gid: m.gid,
    ...(seed
      ? {
          seedKey: seed.key,
          // The cache starts with what `source` holds in the seed (a directory's contents), owners kept.
          seed: (dir: string) =>
            f.withFilesystem(seed.layers, false, async (root) => {
              const sources = await selectSources(root, [seed.source], {}, { literal: true });
              await copySources({ srcRoot: root, sources, destRoot: dir, dest: '/' });
            }),
        }
      : {}),
    ...(f.signal ? { signal: f.signal } : {}),
  });
  try {
    return await fn(lease.dir);
  } finally {
    await lease.release();
  }
}

async function addSecret(m: SecretMount, f: MountFacilities, prepared: PreparedMounts): Promise<void> {
  const value = await f.secrets?.get(m.id);
  if (value === undefined) {
    // As BuildKit: an optional secret the build was not given is simply absent.
    if (m.required) throw new MountError(`secret ${m.id}: not found (pass it with --secret id=${m.id},src=FILE or env=VAR)`);
    return;
  }
  prepared.secretValues.push(value);
  if (m.target !== undefined) prepared.mounts.push({ type: 'secret', target: m.target, data: value, mode: m.mode, uid: m.uid, gid: m.gid });
  if (m.env !== undefined) prepared.secretEnv.push(`${m.env}=${value.toString('utf8')}`);
}

function addSsh(m: SshMount, f: MountFacilities, prepared: PreparedMounts): void {
  const agent = f.ssh?.get(m.id);
  if (!agent) {
    if (m.required) throw new MountError(`no SSH agent or key was given for id "${m.id}" (pass it with --ssh ${m.id}[=SOCKET|KEY])`);
    return;
  }
  prepared.mounts.push({ type: 'ssh', target: m.target, agent, mode: m.mode, uid: m.uid, gid: m.gid });
}
