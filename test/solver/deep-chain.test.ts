// The solver on a chain of 20,000 steps: it used to recurse once per step (solve → solveVertex →
// solve of the input) and overflow the stack. Running 20,000 real containers would take hours,
// so every step here is a cache hit: the cache index is the one stand-in, and everything that
// would run, pull or snapshot throws if the solver ever calls it.

import { describe, expect, it } from 'vitest';
import { parseDockerfile, compile } from '../../src/frontend/index.js';
import { Solver, type SolverOptions } from '../../src/solver/solver.js';
import { StatCache } from '../../src/cache/checksum.js';
import type { ProgressEvent } from '../../src/progress.js';

const unused = new Proxy(
  {},
  {
    get: (_t, name) => {
      throw new Error(`the solver used ${String(name)} on an all-cached build`);
    },
  },
);

describe('solver', () => {
  it('solves a chain of 20,000 cached RUN steps without recursing per step', async () => {
    const text = `FROM scratch\n${Array.from({ length: 20_000 }, (_, i) => `RUN echo ${i}`).join('\n')}\n`;
    const compiled = await compile(parseDockerfile(text), {
      file: 'Dockerfile',
      buildArgs: {},
      platform: { os: 'linux', architecture: 'amd64' },
      resolveImage: () => Promise.reject(new Error('no images')),
      dockerignore: [],
    });
    const cached: ProgressEvent[] = [];
    const opts = {
      store: unused,
      snapshotter: unused,
      executor: unused,
      images: unused,
      // Saving a stat cache that hashed nothing writes nothing (a memory one: no file either).
      statCache: StatCache.memory(),
      localDirs: {},
      cache: { get: async () => ({ layers: [], createdAt: '' }), lastIngredients: async () => undefined, recordIngredients: async () => undefined },
      progress: (e: ProgressEvent) => {
        if (e.type === 'step' && e.status === 'cached') cached.push(e);
      },
    } as unknown as SolverOptions;
    const result = await new Solver(compiled.definition, opts).solve(compiled.root);
    expect(result).toMatchObject({ kind: 'layers', layers: [] });
    expect(cached).toHaveLength(20_000);
  });
});
