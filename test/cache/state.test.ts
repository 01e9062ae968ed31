import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { openState } from '../../src/cache/state.js';

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
  const dead = spawnSync('true').pid!;
  await writeFile(join(root, 'lock'), String(dead));
  state = await openState(root, { waitMs: 0 });
  expect(state.previousClean).toBe(false);
  await state.release();
});
