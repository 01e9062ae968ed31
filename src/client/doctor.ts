// `doctor()`: an integrity check of a state directory, read-only. Every record (image index
// entries, manifests, configs, cache records and their layers, compressed-layer records) must
// name content that exists, with the size it records, and every blob must hash to its name.
// Leftovers of builds that did not finish (temporary files, uncommitted snapshots, mount points,
// runc containers and bundles) are reported apart: the next build sweeps them.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import pLimit from 'p-limit';
import { checkStatCacheFile } from '../cache/checksum.js';
import { decodeCopyRecord } from '../cache/copy-record.js';
import { defaultStateRoot } from '../cache/state-root.js';
import { deadPreparedLocks, lockOwner } from '../cache/lock.js';
import { deadUsers, liveUsers } from '../cache/state.js';
import { temporaryFiles } from '../cache/temp-files.js';
import { RuncExecutor } from '../executor/runc.js';
import { isIndexMediaType, MediaType, type Descriptor, type Digest, type ImageConfigFile, type ImageIndex, type ImageManifest } from '../oci/types.js';
import { createSnapshotter, probeDirs } from '../snapshotter/index.js';
import { listMountPoints } from '../snapshotter/mount.js';
import { isOwnerAlive } from '../util/process.js';
import { pathExists } from '../util/path-exists.js';

export interface DoctorOptions {
  /** State directory; default as for `build()`. */
  root?: string;
  /** The runc binary and state directory builds use (default: `runc`, its own default root). */
  runc?: string;
  runcRoot?: string;
}

export interface DoctorIssue {
  /** The file, directory, mount point or container concerned. */
  path: string;
  message: string;
  /** Left behind by a build that did not finish (killed, crashed): the next build removes it. */
  leftover: boolean;
}

export interface DoctorReport {
  root: string;
  issues: DoctorIssue[];
  checked: { blobs: number; images: number; cacheRecords: number; snapshots: number };
}

/** The state directory is in use: its contents are changing under the check. */
export class StateInUseError extends Error {
  constructor(
    readonly root: string,
    readonly pid: number,
  ) {
    super(`state directory ${root} is in use by process ${pid}: check it when no build or pull is running`);
    this.name = 'StateInUseError';
  }
}

const UNCOMPRESSED_LAYERS = new Set<string>([MediaType.OciLayer, MediaType.DockerLayer]);
const HEX64 = /^[0-9a-f]{64}$/;

export async function doctor(opts: DoctorOptions = {}): Promise<DoctorReport> {
  const root = resolve(opts.root ?? defaultStateRoot());
  if (!(await pathExists(root))) throw new Error(`state directory ${root} does not exist`);
  const issues: DoctorIssue[] = [];
  const problem = (path: string, message: string): void => void issues.push({ path, message, leftover: false });
  const leftover = (path: string, message: string): void => void issues.push({ path, message, leftover: true });

  const lock = await lockOwner(join(root, 'lock'));
  if (lock?.alive) throw new StateInUseError(root, lock.pid);
  const user = (await liveUsers(root))[0];
  if (user !== undefined) throw new StateInUseError(root, user);
  if (lock) leftover(join(root, 'lock'), `lock of process ${lock.pid || '(unknown)'}, which is gone`);
  for (const path of await deadUsers(root)) leftover(path, 'a build or pull of a process that is gone');
  // The image index's lock is held for a moment by whoever names an image; the next one takes over a dead owner's.
  const indexLock = await lockOwner(join(root, 'index.lock'));
  if (indexLock && !indexLock.alive) leftover(join(root, 'index.lock'), `image index lock of process ${indexLock.pid}, which is gone`);
  for (const dead of await deadPreparedLocks(root)) leftover(dead, 'prepared lock of a process that is gone');
  const claims = join(root, 'cache', 'running');
  for (const name of await readdir(claims).catch(() => [] as string[])) {
    if (!name.endsWith('.lock')) continue;
    const claim = await lockOwner(join(claims, name));
    if (claim && !claim.alive) leftover(join(claims, name), `claim on a cache key by process ${claim.pid}, which is gone`);
  }
  for (const dead of await deadPreparedLocks(claims).catch(() => [] as string[])) leftover(dead, 'prepared lock of a process that is gone');

  const blobs = await checkBlobs(root, problem);
  const referenced = new Refs(root, blobs.good, problem);
  const images = await checkImageIndex(root, referenced, problem);
  const cacheRecords = await checkCacheRecords(root, referenced, problem);
  await checkCompressedRecords(root, referenced, problem);
  for (const file of ['blob-sources.json', join('cache', 'context'), join('cache', 'steps'), join('cache', 'copies')]) await checkJsonFiles(join(root, file), problem);
  await checkStatCaches(join(root, 'cache', 'context'), problem);
  await checkCopyRecords(join(root, 'cache', 'copies'), problem);

  for (const path of await temporaryFiles(root)) leftover(path, 'temporary file of an interrupted write');

  for (const dir of await probeDirs(root)) leftover(dir, 'overlayfs probe of a process that is gone');
  let snapshots = 0;
  if (await pathExists(join(root, 'driver'))) {
    const sn = await createSnapshotter(root);
    snapshots = (await sn.list()).length;
    for (const p of await sn.check()) (p.leftover ? leftover : problem)(p.path, p.message);
  }

  // Mount points: only those a live build made (under mounts/, named after their owner) may exist.
  const mountsDir = join(root, 'mounts');
  for (const point of new Set(await listMountPoints())) {
    if (point !== root && !point.startsWith(`${root}/`)) continue;
    const owner = point.startsWith(`${mountsDir}/`) ? /^(\d+\.\d+)-/.exec(point.slice(mountsDir.length + 1))?.[1] : undefined;
    if (owner === undefined || !isOwnerAlive(owner)) leftover(point, 'still mounted, by a process that is gone');
  }

  const executor = new RuncExecutor({ runc: opts.runc, stateRoot: opts.runcRoot, bundleRoot: join(root, 'bundles') });
  const { containers, bundles } = await executor.leftovers();
  for (const c of containers) leftover(`runc container ${c.id}`, `container of a process that is gone (bundle ${c.bundle})`);
  for (const b of bundles) leftover(b, 'container bundle of a process that is gone');

  return { root, issues, checked: { blobs: blobs.count, images, cacheRecords, snapshots } };
}

type Report = (path: string, message: string) => void;

/** Re-hashes every blob; returns the size of each one whose bytes match its name, and how many there are. */
async function checkBlobs(root: string, problem: Report): Promise<{ good: Map<Digest, number>; count: number }> {
  const dir = join(root, 'blobs', 'sha256');
  const good = new Map<Digest, number>();
  const limit = pLimit(2);
  const names = await readdir(dir).catch(() => [] as string[]);
  await Promise.all(
    names.map((name) =>
      limit(async () => {
        const path = join(dir, name);
        if (!HEX64.test(name)) return problem(path, 'not a blob: the name is not a sha256 digest');
        const hash = createHash('sha256');
        let size = 0;
        try {
          await pipeline(createReadStream(path), async (source: AsyncIterable<Buffer>) => {
            for await (const chunk of source) {
              hash.update(chunk);
              size += chunk.length;
            }
          });
        } catch (err) {
          return problem(path, `unreadable blob: ${(err as Error).message}`);
        }
        const actual = hash.digest('hex');
        if (actual !== name) return problem(path, `corrupt blob: its bytes hash to sha256:${actual}`);
        good.set(`sha256:${name}`, size);
      }),
    ),
  );
  return { good, count: names.length };
}

/** Checks descriptors against the verified blobs. */
class Refs {
  constructor(
    private readonly root: string,
    private readonly blobs: Map<Digest, number>,
    readonly problem: Report,
  ) {}

  has(digest: Digest): boolean {
    return this.blobs.has(digest);
  }

  /** True when `desc` names a verified blob of the size it says; reports it otherwise. */
  check(where: string, desc: { digest: Digest; size?: number }, what: string): boolean {
    if (typeof desc.digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(desc.digest)) {
      this.problem(where, `${what} has an invalid digest ${JSON.stringify(desc.digest)}`);
      return false;
    }
    const size = this.blobs.get(desc.digest);
    if (size === undefined) {
      const file = join(this.root, 'blobs', 'sha256', desc.digest.slice(7));
      this.problem(where, `${what} ${desc.digest} is missing or corrupt (${file})`);
      return false;
    }
    if (desc.size !== undefined && desc.size !== size) {
      this.problem(where, `${what} ${desc.digest} is recorded as ${desc.size} bytes but has ${size}`);
      return false;
    }
    return true;
  }

  async json<T>(where: string, digest: Digest, what: string): Promise<T | undefined> {
    try {
      return JSON.parse(await readFile(join(this.root, 'blobs', 'sha256', digest.slice(7)), 'utf8')) as T;
    } catch (err) {
      this.problem(where, `${what} ${digest} is not valid JSON: ${(err as Error).message}`);
      return undefined;
    }
  }
}

async function checkImageIndex(root: string, refs: Refs, problem: Report): Promise<number> {
  const file = join(root, 'index.json');
  let index: ImageIndex;
  try {
    index = JSON.parse(await readFile(file, 'utf8')) as ImageIndex;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') problem(file, `unreadable image index: ${(err as Error).message}`);
    return 0;
  }
  if (!Array.isArray(index.manifests)) {
    problem(file, 'image index has no manifests list');
    return 0;
  }
  for (const desc of index.manifests) {
    const name = desc.annotations?.['org.opencontainers.image.ref.name'] ?? desc.digest;
    await checkImage(`${file} (${name})`, desc, refs, 0);
  }
  return index.manifests.length;
}

async function checkImage(where: string, desc: Descriptor, refs: Refs, depth: number): Promise<void> {
  if (!refs.check(where, desc, 'manifest')) return;
  if (isIndexMediaType(desc.mediaType)) {
    const index = await refs.json<ImageIndex>(where, desc.digest, 'index');
    // A pull stores one platform's manifest: only the entries that are here are checked.
    for (const child of index?.manifests ?? []) {
      if (depth < 2 && refs.has(child.digest)) await checkImage(where, child, refs, depth + 1);
    }
    return;
  }
  const manifest = await refs.json<ImageManifest>(where, desc.digest, 'manifest');
  if (!manifest) return;
  if (!manifest.config || !Array.isArray(manifest.layers)) return refs.problem(where, `manifest ${desc.digest} lacks config or layers`);
  const layersOk = manifest.layers.map((l) => refs.check(where, l, 'layer')).every(Boolean);
  if (!refs.check(where, manifest.config, 'config')) return;
  const config = await refs.json<ImageConfigFile>(where, manifest.config.digest, 'config');
  const diffIDs = config?.rootfs?.diff_ids;
  if (!config || !layersOk) return;
  if (!Array.isArray(diffIDs) || diffIDs.length !== manifest.layers.length) {
    refs.problem(where, `config ${manifest.config.digest} lists ${Array.isArray(diffIDs) ? diffIDs.length : 0} diff_ids for ${manifest.layers.length} layers`);
  }
}

async function checkCacheRecords(root: string, refs: Refs, problem: Report): Promise<number> {
  const dir = join(root, 'cache', 'keys');
  let count = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.endsWith('.json')) continue; // temporary files: reported with the others
    const file = join(dir, name);
    count++;
    let record: { layers?: Array<{ diffID: Digest; digest: Digest; size: number; mediaType: string }> };
    try {
      record = JSON.parse(await readFile(file, 'utf8')) as typeof record;
    } catch (err) {
      problem(file, `unreadable cache record: ${(err as Error).message}`);
      continue;
    }
    if (!Array.isArray(record.layers)) {
      problem(file, 'cache record has no layers list');
      continue;
    }
    for (const layer of record.layers) {
      if (!refs.check(file, layer, 'cached layer')) continue;
      if (UNCOMPRESSED_LAYERS.has(layer.mediaType) && layer.diffID !== layer.digest) {
        problem(file, `uncompressed cached layer ${layer.digest} is recorded with diffID ${layer.diffID}`);
      }
    }
  }
  return count;
}

/** compressed/<algorithm>/<uncompressed hex> holds the digest of the compressed copy. */
async function checkCompressedRecords(root: string, refs: Refs, problem: Report): Promise<void> {
  const base = join(root, 'compressed');
  for (const algo of await readdir(base).catch(() => [] as string[])) {
    for (const name of await readdir(join(base, algo)).catch(() => [] as string[])) {
      if (!HEX64.test(name)) continue; // temporary files: reported with the others
      const file = join(base, algo, name);
      const digest = (await readFile(file, 'utf8')).trim();
      if (!/^sha256:[0-9a-f]{64}$/.test(digest)) problem(file, `compressed-layer record holds ${JSON.stringify(digest)}, not a digest`);
      else refs.check(file, { digest: digest as Digest }, 'compressed layer');
    }
  }
}

/** The copy records (`<id>.copy`) must decode: a damaged one only costs a full copy, but says the disk lied. */
async function checkCopyRecords(dir: string, problem: Report): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.endsWith('.copy')) continue;
    const file = join(dir, name);
    if (!decodeCopyRecord(await readFile(file))) problem(file, 'unreadable copy record');
  }
}

/** The context stat caches (`<id>.stat`) must decode: a damaged one only costs a re-hash, but says the disk lied. */
async function checkStatCaches(dir: string, problem: Report): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.endsWith('.stat')) continue;
    const file = join(dir, name);
    try {
      checkStatCacheFile(await readFile(file));
    } catch (err) {
      problem(file, `unreadable context stat cache: ${(err as Error).message}`);
    }
  }
}

/** A JSON file, or every `.json` file of a directory, must parse. */
async function checkJsonFiles(path: string, problem: Report): Promise<void> {
  const st = await stat(path).catch(() => undefined);
  if (!st) return;
  const files = st.isDirectory() ? (await readdir(path)).filter((n) => n.endsWith('.json')).map((n) => join(path, n)) : [path];
  for (const file of files) {
    try {
      JSON.parse(await readFile(file, 'utf8'));
    } catch (err) {
      problem(file, `unreadable: ${(err as Error).message}`);
    }
  }
}


