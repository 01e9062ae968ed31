// What the lock code removes, and what it must leave: a dead process's locks go, a live one's stay.

import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { acquireLock, removeDeadLock } from '../../src/cache/lock.js';
import { processToken } from '../../src/util/process.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'builder-lock-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An owner token of a process that is gone: this pid, but another start time. */
const deadOwner = (): string => `${process.pid}.1`;
/** Above Linux's largest pid_max (2^22): no process has it. */
const NO_SUCH_PID = 2 ** 22 + 1;

it('drops the prepared locks of dead processes beside the lock, keeps a live one\'s, and leaves nothing of its own', async () => {
  const dead = `lock.${deadOwner()}.0123456789ab`;
  const live = `lock.${processToken()}.ba9876543210`;
  for (const [name, owner] of [
    [dead, deadOwner()],
    [live, processToken()],
  ]) {
    await mkdir(join(dir, name!));
    await writeFile(join(dir, name!, owner!), '');
  }
  const release = await acquireLock(join(dir, 'lock'), 'the test lock');
  expect((await readdir(dir)).sort()).toEqual(['lock', live]);
  expect(await readdir(join(dir, 'lock'))).toEqual([processToken()]);
  await release();
  expect(await readdir(dir)).toEqual([live]);
});

it('removes a dead owner\'s lock directory and an older version\'s lock file of a dead pid; keeps a live owner\'s', async () => {
  const deadDir = join(dir, 'dead.lock');
  await mkdir(deadDir);
  await writeFile(join(deadDir, deadOwner()), '');
  await removeDeadLock(deadDir);

  // An older version's lock: a file holding the pid of a process that is gone.
  const oldFile = join(dir, 'old.lock');
  await writeFile(oldFile, `${NO_SUCH_PID}\n`);
  await removeDeadLock(oldFile);

  const liveDir = join(dir, 'live.lock');
  await mkdir(liveDir);
  await writeFile(join(liveDir, processToken()), '');
  await removeDeadLock(liveDir);
  await removeDeadLock(join(dir, 'absent.lock'));

  expect(await readdir(dir)).toEqual(['live.lock']);
  expect(await readdir(liveDir)).toEqual([processToken()]);
});
