// Cache mounts kept in the state directory: one id is one cache for every step, build and process
// on the directory; new caches are made whole (owner, mode, seed) or not at all; shared, private
// and locked users get instances as BuildKit gives them, also across processes, and a holder
// that dies or a waiter that gives up leaves nothing held.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { CacheMounts, type CacheMountRecord } from '../../src/cache/cache-mounts.js';
import type { CacheMountLease, CacheMountRequest } from '../../src/solver/solver.js';

let root: string;
let children: ChildProcessWithoutNullStreams[];
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'builder-cache-mounts-'));
  children = [];
});
afterEach(async () => {
  for (const child of children) child.kill('SIGKILL');
  await rm(root, { recursive: true, force: true });
});

const uid = process.getuid!();
const gid = process.getgid!();

function request(id: string, sharing: CacheMountRequest['sharing'], more: Partial<CacheMountRequest> = {}): CacheMountRequest {
  return { id, sharing, mode: 0o755, uid, gid, ...more };
}

/** Lock directories left under the cache mounts (the caches' own and those of holders). */
async function locksLeft(): Promise<string[]> {
  const base = join(root, 'cache-mounts');
  const found: string[] = [];
  for (const cache of await readdir(base)) for (const name of await readdir(join(base, cache))) if (name.includes('lock')) found.push(`${cache}/${name}`);
  return found;
}

/** `lease`, noting in `order` when it is acquired. */
function noteWhen(order: string[], event: string, lease: Promise<CacheMountLease>): Promise<CacheMountLease> {
  return lease.then((l) => {
    order.push(event);
    return l;
  });
}

/** Gives a waiter time to (wrongly) get through before the holder lets go. */
const aWhile = () => new Promise((resolve) => setTimeout(resolve, 400));

it('one id is one directory: what a step leaves there the next one finds, from any store object on the state directory', async () => {
  const first = await new CacheMounts(root).acquire(request('/root/.npm', 'shared'));
  await writeFile(join(first.dir, 'pkg.tgz'), 'tarball');
  const together = await new CacheMounts(root).acquire(request('/root/.npm', 'shared'));
  expect(together.dir).toBe(first.dir);
  await Promise.all([first.release(), together.release()]);

  const later = await new CacheMounts(root).acquire(request('/root/.npm', 'locked'));
  expect(later.dir).toBe(first.dir);
  expect(await readFile(join(later.dir, 'pkg.tgz'), 'utf8')).toBe('tarball');
  await later.release();
  expect(await locksLeft()).toEqual([]);
});

it('different ids, and one id seeded from different sources, are different caches inside the state directory', async () => {
  const store = new CacheMounts(root);
  const leases = await Promise.all([
    store.acquire(request('go-mod', 'shared')),
    store.acquire(request('go-build', 'shared')),
    store.acquire(request('go-mod', 'shared', { seedKey: 'stage-a' })),
    store.acquire(request('go-mod', 'shared', { seedKey: 'stage-b' })),
    store.acquire(request('../../escape', 'shared')),
  ]);
  expect(new Set(leases.map((l) => l.dir)).size).toBe(leases.length);
  for (const l of leases) expect(l.dir.startsWith(join(root, 'cache-mounts') + '/')).toBe(true);
  await Promise.all(leases.map((l) => l.release()));

  const records = await Promise.all(leases.map(async (l) => JSON.parse(await readFile(join(l.dir, '..', 'cache.json'), 'utf8')) as CacheMountRecord));
  expect(records.map((r) => [r.id, r.seedKey])).toEqual([
    ['go-mod', undefined],
    ['go-build', undefined],
    ['go-mod', 'stage-a'],
    ['go-mod', 'stage-b'],
    ['../../escape', undefined],
  ]);
});

it.skipIf(uid !== 0)('a new cache directory gets the mode and owner asked for; an existing one keeps its own', async () => {
  const store = new CacheMounts(root);
  const made = await store.acquire(request('owned', 'locked', { mode: 0o2770, uid: 1234, gid: 5678 }));
  let st = await stat(made.dir);
  expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([0o2770, 1234, 5678]);
  await made.release();

  const again = await store.acquire(request('owned', 'locked', { mode: 0o700, uid: 1, gid: 1 }));
  st = await stat(again.dir);
  expect([again.dir, st.mode & 0o7777, st.uid, st.gid]).toEqual([made.dir, 0o2770, 1234, 5678]);
  await again.release();
});

it('records when a cache was made and last used', async () => {
  const store = new CacheMounts(root);
  const before = new Date().toISOString();
  const lease = await store.acquire(request('dated', 'shared'));
  const file = join(lease.dir, '..', 'cache.json');
  const made = JSON.parse(await readFile(file, 'utf8')) as CacheMountRecord;
  expect(made.created >= before).toBe(true);
  await aWhile();
  await lease.release();
  const used = JSON.parse(await readFile(file, 'utf8')) as CacheMountRecord;
  expect(used.created).toBe(made.created);
  expect(used.lastUsed > made.lastUsed).toBe(true);
});

it('a seed runs once per new instance, into the directory then mounted, and never again for it', async () => {
  const store = new CacheMounts(root);
  const seeded: string[] = [];
  const seed = async (dir: string) => {
    seeded.push(dir);
    await writeFile(join(dir, 'from-stage'), 'seed');
  };
  const first = await store.acquire(request('seeded', 'private', { seedKey: 'deps', seed }));
  expect(await readFile(join(first.dir, 'from-stage'), 'utf8')).toBe('seed');
  await writeFile(join(first.dir, 'from-step'), 'step');
  // A second, concurrent private user gets a new instance, seeded too.
  const second = await store.acquire(request('seeded', 'private', { seedKey: 'deps', seed }));
  expect(second.dir).not.toBe(first.dir);
  expect(await readdir(second.dir)).toEqual(['from-stage']);
  expect(seeded).toHaveLength(2);
  // The seed wrote under another name: no container ever sees a half-seeded cache.
  expect(seeded).not.toContain(first.dir);
  await Promise.all([first.release(), second.release()]);

  const reused = await store.acquire(request('seeded', 'private', { seedKey: 'deps', seed }));
  expect(reused.dir).toBe(first.dir);
  expect((await readdir(reused.dir)).sort()).toEqual(['from-stage', 'from-step']);
  expect(seeded).toHaveLength(2);
  await reused.release();
});

it('a failing seed leaves nothing, and the next use seeds afresh', async () => {
  const store = new CacheMounts(root);
  const failing = async (dir: string) => {
    await writeFile(join(dir, 'half'), 'x');
    throw new Error('copy failed');
  };
  await expect(store.acquire(request('seeded', 'locked', { seedKey: 'deps', seed: failing }))).rejects.toThrow('copy failed');
  expect(await readdir(join(root, 'cache-mounts'))).toEqual([]);

  const lease = await store.acquire(request('seeded', 'locked', { seedKey: 'deps', seed: (dir) => writeFile(join(dir, 'whole'), 'y') }));
  expect(await readdir(lease.dir)).toEqual(['whole']);
  await lease.release();
});

it('sweeps an instance a dead process was making without following the links in it', async () => {
  const store = new CacheMounts(root);
  const lease = await store.acquire(request('swept', 'shared'));
  await lease.release();
  const outside = join(root, 'outside');
  await mkdir(outside);
  await writeFile(join(outside, 'keep'), 'host file');
  // What a crash while copying a seed leaves: a temporary instance holding links out of it.
  const leftover = join(lease.dir, '..', 'new-0123456789ab');
  await mkdir(leftover);
  await symlink(outside, join(leftover, 'dir-link'));
  await symlink(join(outside, 'keep'), join(leftover, 'file-link'));
  // A link the container left inside the instance stays as it is.
  await symlink(outside, join(lease.dir, 'container-link'));

  const next = await store.acquire(request('swept', 'shared'));
  expect(next.dir).toBe(lease.dir);
  expect(await readdir(join(lease.dir, '..'))).not.toContain('new-0123456789ab');
  expect(await readFile(join(outside, 'keep'), 'utf8')).toBe('host file');
  expect(await readdir(next.dir)).toEqual(['container-link']);
  await next.release();
});

it('locked: a second user waits until the first lets go, then gets the same directory', async () => {
  const store = new CacheMounts(root);
  const order: string[] = [];
  const first = await store.acquire(request('apt', 'locked'));
  const second = noteWhen(order, 'second acquired', store.acquire(request('apt', 'locked')));
  await aWhile();
  await writeFile(join(first.dir, 'lists'), 'done');
  order.push('first released');
  await first.release();
  const lease = await second;
  expect(order).toEqual(['first released', 'second acquired']);
  expect(lease.dir).toBe(first.dir);
  expect(await readFile(join(lease.dir, 'lists'), 'utf8')).toBe('done');
  await lease.release();
});

it('release is idempotent: releasing twice does not let go of the next holder', async () => {
  const store = new CacheMounts(root);
  const order: string[] = [];
  const first = await store.acquire(request('apt', 'locked'));
  await first.release();
  const second = await store.acquire(request('apt', 'locked'));
  await first.release();
  const third = noteWhen(order, 'third acquired', store.acquire(request('apt', 'locked')));
  await aWhile();
  order.push('second released');
  await second.release();
  await (await third).release();
  expect(order).toEqual(['second released', 'third acquired']);
});

it('private: concurrent users get their own directories, and a later one reuses a free one', async () => {
  const store = new CacheMounts(root);
  const [a, b] = await Promise.all([store.acquire(request('tmp', 'private')), store.acquire(request('tmp', 'private'))]);
  expect(a.dir).not.toBe(b.dir);
  await b.release();
  const c = await store.acquire(request('tmp', 'private'));
  expect(c.dir).toBe(b.dir);
  await Promise.all([a.release(), c.release()]);
  const instances = (await readdir(join(a.dir, '..'))).filter((n) => /^\d+$/.test(n));
  expect(instances).toHaveLength(2);
});

it('shared and locked users on one id: locked waits for the shared ones, a shared one then gets another instance', async () => {
  const store = new CacheMounts(root);
  const order: string[] = [];
  const [s1, s2] = await Promise.all([store.acquire(request('mixed', 'shared')), store.acquire(request('mixed', 'shared'))]);
  expect(s1.dir).toBe(s2.dir);
  const locked = noteWhen(order, 'locked acquired', store.acquire(request('mixed', 'locked')));
  await aWhile();
  await s1.release();
  await aWhile();
  order.push('shared released');
  await s2.release();
  const l = await locked;
  expect(order).toEqual(['shared released', 'locked acquired']);
  expect(l.dir).toBe(s1.dir);

  const s3 = await store.acquire(request('mixed', 'shared'));
  expect(s3.dir).not.toBe(l.dir);
  await Promise.all([l.release(), s3.release()]);
  // Once free, the first instance is everyone's again.
  const s4 = await store.acquire(request('mixed', 'shared'));
  expect(s4.dir).toBe(s1.dir);
  await s4.release();
});

it('abort while waiting for a locked cache rejects with AbortError and leaves no lock behind', async () => {
  const store = new CacheMounts(root);
  const holder = await store.acquire(request('aborted', 'locked'));
  const controller = new AbortController();
  const waiting = store.acquire(request('aborted', 'locked', { signal: controller.signal }));
  await aWhile();
  controller.abort();
  await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
  await holder.release();
  expect(await locksLeft()).toEqual([]);
  // An already aborted signal: rejected before anything is taken.
  await expect(store.acquire(request('aborted', 'locked', { signal: AbortSignal.abort() }))).rejects.toMatchObject({ name: 'AbortError' });
  const next = await store.acquire(request('aborted', 'locked'));
  expect(next.dir).toBe(holder.dir);
  await next.release();
});

/**
 * Another process that takes a lease on `id` (from the compiled module: tests run after
 * `npm run build`), prints its directory, and lets go when its stdin closes.
 */
async function holdInChild(id: string, sharing: CacheMountRequest['sharing']): Promise<{ child: ChildProcessWithoutNullStreams; dir: string }> {
  const moduleUrl = new URL('../../dist/cache/cache-mounts.js', import.meta.url).href;
  const script = `
    const { CacheMounts } = await import(${JSON.stringify(moduleUrl)});
    const [root, id, sharing] = process.argv.slice(1);
    const lease = await new CacheMounts(root).acquire({ id, sharing, mode: 0o755, uid: ${uid}, gid: ${gid} });
    process.stdout.write(lease.dir + '\\n');
    process.stdin.resume();
    process.stdin.on('end', () => lease.release());`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, root, id, sharing]);
  children.push(child);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const dir = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.endsWith('\n')) resolve(out.trim());
    });
    child.on('exit', (code) => reject(new Error(`child exited ${code}: ${stderr}`)));
  });
  return { child, dir };
}

it('locked across processes: this process waits for another that holds the cache, then sees what it wrote', async () => {
  const { child, dir } = await holdInChild('shared-build-cache', 'locked');
  const order: string[] = [];
  const waiting = noteWhen(order, 'acquired here', new CacheMounts(root).acquire(request('shared-build-cache', 'locked')));
  await aWhile();
  await writeFile(join(dir, 'written-while-held'), 'x');
  order.push('child lets go');
  const exited = new Promise((resolve) => child.on('exit', resolve));
  child.stdin.end();
  const lease = await waiting;
  expect(order).toEqual(['child lets go', 'acquired here']);
  expect(lease.dir).toBe(dir);
  expect(await readdir(lease.dir)).toEqual(['written-while-held']);
  await lease.release();
  await exited;
  expect(await locksLeft()).toEqual([]);
});

it('a process killed while holding a locked cache does not block the next user', async () => {
  const { child, dir } = await holdInChild('killed', 'locked');
  const order: string[] = [];
  const waiting = noteWhen(order, 'acquired here', new CacheMounts(root).acquire(request('killed', 'locked')));
  await aWhile();
  order.push('holder killed');
  child.kill('SIGKILL');
  const lease = await waiting;
  expect(order).toEqual(['holder killed', 'acquired here']);
  expect(lease.dir).toBe(dir);
  await lease.release();
  expect(await locksLeft()).toEqual([]);
});

it('private and shared across processes: a private holder elsewhere means another directory here, a shared one the same', async () => {
  const priv = await holdInChild('per-process', 'private');
  const mine = await new CacheMounts(root).acquire(request('per-process', 'private'));
  expect(mine.dir).not.toBe(priv.dir);
  await mine.release();

  const shared = await holdInChild('together', 'shared');
  const alongside = await new CacheMounts(root).acquire(request('together', 'shared'));
  expect(alongside.dir).toBe(shared.dir);
  await alongside.release();
});
