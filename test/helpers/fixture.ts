// The usual set-up of a test file that builds images: a registry on 127.0.0.1 with the busybox
// base pushed (made with umoci and skopeo, not builder), and a scratch directory; both removed
// after the file's tests. Read the fields inside tests (they are set in beforeAll).

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { pushBusyboxImage } from './base-image.js';
import { startRegistry } from './registry.js';

export interface BuildFixture {
  registry: Awaited<ReturnType<typeof startRegistry>>;
  /** Reference of the busybox base image in that registry. */
  base: string;
  /** A scratch directory for contexts, state directories and outputs. */
  work: string;
}

export function useBuildFixture(name: string): BuildFixture {
  const fixture = {} as BuildFixture;
  beforeAll(async () => {
    fixture.registry = await startRegistry();
    fixture.base = (await pushBusyboxImage(fixture.registry.host)).ref;
    fixture.work = await mkdtemp(join(tmpdir(), `builder-${name}-`));
  });
  afterAll(async () => {
    await fixture.registry?.stop();
    if (fixture.work) await rm(fixture.work, { recursive: true, force: true });
  });
  return fixture;
}
