import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { openState, StateBusyError } from '../../src/cache/state.js';
import { processToken } from '../../src/util/process.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'builder-state-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

it('sweeps what an unfinished build left, once, and only while nobody else uses the directory', async () => {
  let sweeps = 0;
  const sweep = async () => void sweeps++;
  // A fresh directory: nobody vouches for it.
  let state = await openState(root, { sweep });
  expect(sweeps).toBe(1);
  await state.release({ clean: true });
  state = await openState(root, { sweep });
  expect(sweeps).toBe(1);
  await state.release(); // a failed or interrupted build

  // Another build is running: its containers and ours cannot be told apart, so the sweep waits.
  const other = await openState(root);
  state = await openState(root, { sweep });
  expect(sweeps).toBe(1);
  await Promise.all([other.release({ clean: true }), state.release({ clean: true })]);
  // The first one alone sweeps, and the mark is gone.
  state = await openState(root, { sweep });
  expect(sweeps).toBe(2);
  await state.release({ clean: true });
  state = await openState(root, { sweep });
  expect(sweeps).toBe(2);
  await state.release({ clean: true });

  // A build that died while running: its entry becomes the mark, and is removed.
  await writeFile(join(root, 'users', `${deadPid()}.1.0123456789ab`), '');
  state = await openState(root, { sweep });
  expect(sweeps).toBe(3);
  expect(await readdir(join(root, 'users'))).toHaveLength(1);
  await state.release({ clean: true });
  expect(await readdir(join(root, 'users'))).toEqual([]);
  expect(await readdir(root)).not.toContain('dirty');
});

it('does not sweep a state directory it creates itself: nothing can have been left in it', async () => {
  let sweeps = 0;
  const sweep = async () => void sweeps++;
  const fresh = join(root, 'new', 'state');
  const state = await openState(fresh, { sweep });
  expect(sweeps).toBe(0);
  expect(await readdir(fresh)).not.toContain('dirty');
  await state.release(); // a failed build: the next one sweeps
  await (await openState(fresh, { sweep })).release({ clean: true });
  expect(sweeps).toBe(1);
});

it('lets builds share the directory, while prune waits for them all and holds new ones at the door', async () => {
  const a = await openState(root);
  const b = await openState(root);
  const told: string[] = [];
  let alone: Awaited<ReturnType<typeof openState>> | undefined;
  let toldOnce: () => void;
  const saidSo = new Promise<void>((resolve) => (toldOnce = resolve));
  const exclusive = openState(root, { access: 'exclusive', onWait: (m) => (told.push(m), toldOnce()) }).then((s) => (alone = s));
  await saidSo;
  expect(told).toEqual([`waiting for 2 builds (PIDs ${process.pid}) to finish (${root})`]);
  // A build that starts now waits for the prune, and gives up when told to.
  await expect(openState(root, { waitMs: 300 })).rejects.toThrow(`state directory ${root} is in use by PID ${process.pid}`);
  await a.release({ clean: true });
  expect(alone).toBeUndefined();
  await b.release({ clean: true });
  await exclusive;
  await expect(openState(root, { access: 'exclusive', waitMs: 0 })).rejects.toBeInstanceOf(StateBusyError);
  await alone!.release({ clean: true });
  const c = await openState(root, { access: 'exclusive', waitMs: 0 });
  await c.release({ clean: true });
  expect((await readdir(root)).filter((n) => n.startsWith('lock'))).toEqual([]);
});

/** A pid that no process has any more. */
function deadPid(): number {
  return spawnSync('true').pid!;
}

/** Leaves a lock naming `owner` (`<pid>.<start time>`), as a build that held it would. */
async function lockAs(owner: string): Promise<void> {
  await mkdir(join(root, 'lock'), { recursive: true });
  await writeFile(join(root, 'lock', owner), '');
}

/** Start time of a live process (/proc/PID/stat field 22). */
async function startTime(pid: number): Promise<string> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
}

it('takes over at once a lock whose pid now belongs to another process (a reused pid)', async () => {
  const other = spawn('sleep', ['30']);
  try {
    const start = Number(await startTime(other.pid!));
    // The pid is alive, but the process that took the lock started at another time.
    await lockAs(`${other.pid}.${start - 1}`);
    const told: string[] = [];
    const state = await openState(root, { access: 'exclusive', waitMs: 60_000, onWait: (m) => told.push(m) });
    expect(told).toEqual([]);
    expect(await readdir(join(root, 'lock'))).toEqual([processToken()]);
    await state.release({ clean: true });
    expect(await readdir(root)).not.toContain('lock');
  } finally {
    other.kill();
  }
});

it('waits for a live owner, says so after about a second, and gets the lock when it is let go', async () => {
  const first = await openState(root, { access: 'exclusive' });
  const told: string[] = [];
  let second: Awaited<ReturnType<typeof openState>> | undefined;
  let toldOnce: () => void;
  const saidSo = new Promise<void>((resolve) => (toldOnce = resolve));
  const waiting = openState(root, { onWait: (m) => (told.push(m), toldOnce()) }).then((s) => (second = s));
  await saidSo;
  expect(second).toBeUndefined();
  expect(told).toEqual([`waiting for the state directory lock held by PID ${process.pid} (${root})`]);
  await first.release({ clean: true });
  await waiting;
  await second!.release();
  // Nothing of the wait is left behind: no lock, no prepared lock directory.
  expect((await readdir(root)).filter((n) => n.startsWith('lock'))).toEqual([]);
});

it('gives up after waitMs naming the owner, and stops waiting when aborted, leaving nothing behind', async () => {
  const holder = spawn('sleep', ['30']);
  try {
    await lockAs(`${holder.pid}.${await startTime(holder.pid!)}`);
    await expect(openState(root, { waitMs: 300 })).rejects.toThrow(`state directory ${root} is in use by PID ${holder.pid}`);
    const ac = new AbortController();
    const opening = openState(root, { signal: ac.signal });
    setTimeout(() => ac.abort(), 200);
    await expect(opening).rejects.toThrow(/abort/i);
    expect((await readdir(root)).filter((n) => n.startsWith('lock'))).toEqual(['lock']);
    expect(await readdir(join(root, 'lock'))).toEqual([`${holder.pid}.${await startTime(holder.pid!)}`]);
  } finally {
    holder.kill();
  }
});

it('keeps the temporary blobs of a live process and drops those of dead ones', async () => {
  const state = await openState(root);
  await state.release({ clean: true });
  const ingest = join(root, 'ingest');
  const live = spawn('sleep', ['30']);
  try {
    const liveFile = `${live.pid}.${await startTime(live.pid!)}-0123456789abcdef`;
    const deadFile = `${deadPid()}.1-0123456789abcdef`;
    await writeFile(join(ingest, liveFile), 'half a layer another build is downloading');
    await writeFile(join(ingest, deadFile), 'left by a build that died');
    const next = await openState(root);
    expect(await readdir(ingest)).toEqual([liveFile]);
    await next.release({ clean: true });
  } finally {
    live.kill();
  }
});

it('makes the state directory private, fixing one left open', async () => {
  const fresh = join(root, 'fresh');
  let state = await openState(fresh);
  await state.release();
  expect((await stat(fresh)).mode & 0o777).toBe(0o700);
  await chmod(fresh, 0o755);
  state = await openState(fresh);
  await state.release();
  expect((await stat(fresh)).mode & 0o777).toBe(0o700);
});

it('honours the lock file of an older version: waits while its pid lives, takes it over once dead', async () => {
  const holder = spawn('sleep', ['30']);
  try {
    await writeFile(join(root, 'lock'), String(holder.pid));
    await expect(openState(root, { waitMs: 300 })).rejects.toThrow(`in use by PID ${holder.pid}`);
  } finally {
    holder.kill();
  }
  await writeFile(join(root, 'lock'), String(deadPid()));
  const state = await openState(root, { access: 'exclusive', waitMs: 0 });
  expect(await readdir(join(root, 'lock'))).toEqual([processToken()]);
  await state.release();
});
