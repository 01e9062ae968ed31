import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { openState } from '../../src/cache/state.js';
import { processToken } from '../../src/util/process.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'builder-state-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

it('tells the next owner whether the previous one finished cleanly (so it knows when to sweep)', async () => {
  // A fresh directory: nobody vouches for it.
  let state = await openState(root);
  expect(state.previousClean).toBe(false);
  await state.release({ clean: true });

  state = await openState(root);
  expect(state.previousClean).toBe(true);
  await state.release(); // a failed or interrupted build

  state = await openState(root);
  expect(state.previousClean).toBe(false);
  await state.release({ clean: true });

  // An owner that died while holding the lock: its lock is taken over and nothing is trusted,
  // although the build before it had finished cleanly.
  state = await openState(root);
  await rm(join(root, 'lock'), { recursive: true });
  await lockAs(`${deadPid()}.1`);
  state = await openState(root, { waitMs: 0 });
  expect(state.previousClean).toBe(false);
  await state.release();
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
    const state = await openState(root, { waitMs: 60_000, onWait: (m) => told.push(m) });
    expect(told).toEqual([]);
    expect(state.previousClean).toBe(false);
    expect(await readdir(join(root, 'lock'))).toEqual([processToken()]);
    await state.release({ clean: true });
    expect(await readdir(root)).not.toContain('lock');
  } finally {
    other.kill();
  }
});

it('waits for a live owner, says so after about a second, and gets the lock when it is let go', async () => {
  const first = await openState(root);
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
  expect(second!.previousClean).toBe(true);
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
  const state = await openState(root, { waitMs: 0 });
  expect(await readdir(join(root, 'lock'))).toEqual([processToken()]);
  await state.release();
});
