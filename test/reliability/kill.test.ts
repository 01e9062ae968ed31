// Builds stopped at random moments, as machines and people stop them: Ctrl-C (SIGINT) or SIGKILL,
// during the base image's pull, RUN steps, COPY, layer commits, compression and the push. After
// every stop the state directory must pass the integrity check (no record naming missing or
// damaged content; after SIGINT nothing left at all), the registry must never hold a tag whose
// blobs are missing, and the next build must succeed and leave nothing behind: no runc
// container, no mount, no temporary file or directory.
//
// The kill moments are random but seeded: the seed is printed, and KILL_SEED=<seed> replays a
// run (KILL_COUNT sets the number of stopped builds, 50 by default).

import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { events, finished, runBuilder, startBuilder } from '../helpers/cli.js';
import { useBuildFixture } from '../helpers/fixture.js';
import { checkState, leftBehind, localTags, registryTag } from '../helpers/integrity.js';
import { seededRandom } from '../helpers/random.js';

const fx = useBuildFixture('kill');
const KILLS = Number(process.env.KILL_COUNT ?? 50);
const SEED = Number(process.env.KILL_SEED ?? Math.floor(Math.random() * 2 ** 31));
/** A new state directory every few builds, so that kills also land in pulls of the base image. */
const FRESH_ROOT_EVERY = 4;

let ctx: string;
let tmp: string;
let base: string;

function buildArgs(root: string, n: number): string[] {
  return ['build', '--network', 'none', '--root', root, '--progress', 'json', '--build-arg', `N=${n}`, '--push', '-t', `${fx.registry.host}/kill/app:${n}`, ctx];
}

const env = () => ({ TMPDIR: tmp });

beforeAll(async () => {
  tmp = await mkdtemp(join(fx.work, 'tmp-'));
  // A base with a 6 MB layer, so that pulling it takes a while.
  const baseCtx = join(fx.work, 'base');
  await mkdir(baseCtx, { recursive: true });
  await writeFile(join(baseCtx, 'Dockerfile'), `FROM ${fx.base}\nCOPY payload /payload\n`);
  await writeFile(join(baseCtx, 'payload'), randomBytes(6 << 20));
  base = `${fx.registry.host}/kill/base:1`;
  const made = await runBuilder(['build', '--root', join(fx.work, 'base-root'), '--push', '-t', base, baseCtx], { env: env() });
  expect(made.code, made.stderr).toBe(0);

  ctx = join(fx.work, 'ctx');
  await mkdir(ctx, { recursive: true });
  await writeFile(
    join(ctx, 'Dockerfile'),
    `FROM ${base}\nARG N\nRUN echo $N > /n && head -c 100000 /dev/urandom > /r\nCOPY data.bin /data.bin\n`,
  );
  await writeFile(join(ctx, 'data.bin'), randomBytes(1 << 20));
});

it(`survives ${KILLS} builds stopped at random moments`, async () => {
  console.log(`kill test seed ${SEED} (replay with KILL_SEED=${SEED})`);
  const rand = seededRandom(SEED);
  const phases = new Map<string, number>();
  const t0 = Date.now();
  let root = '';
  for (let i = 0; i < KILLS; i++) {
    const fresh = i % FRESH_ROOT_EVERY === 0;
    if (fresh) root = join(fx.work, `root-${i}`);
    const signal = rand() < 0.5 ? 'SIGINT' : 'SIGKILL';
    // A phase of the build, then a random moment within it; or any moment of the start-up
    // (opening the state directory, sweeping, probing overlayfs in a new one).
    const targets = fresh ? [START, PULL] : [START, ...PHASES];
    const target = targets[Math.floor(rand() * targets.length)]!;
    const delay = Math.floor(rand() * (target === START ? 800 : 300));
    const what = `kill ${i} (seed ${SEED}): ${signal} ${delay} ms into ${target.source}`;

    const child = startBuilder(buildArgs(root, i), { env: env() });
    while (target !== START && child.exitCode === null && !startedSteps(child.output.stderr).some((n) => target.test(n))) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, delay));
    const phase = lastStarted(child.output.stderr);
    child.kill(signal);
    const r = await finished(child);
    const stoppedBy = child.signalCode ?? (r.code === 130 ? 'SIGINT' : r.code === 0 ? 'finished' : `exit ${r.code}`);
    const key = `${signal} ${stoppedBy === 'finished' ? 'after the end' : phase}`;
    phases.set(key, (phases.get(key) ?? 0) + 1);
    // Ctrl-C ends in 130 (or kills node before builder handles it); it is never an error.
    expect([signal, 'finished'], `${what}: ${r.stderr}`).toContain(stoppedBy);

    // No record names missing or damaged content; a build that exited by itself left nothing.
    if (stoppedBy === 'SIGKILL') expect((await checkState(root)).problems, what).toEqual([]);
    else expect(await leftBehind(root, tmp), what).toEqual([]);
    // A tag in the registry names blobs that are all there; a local tag only once the push is done.
    const pushed = await registryTag(fx.registry.host, 'kill/app', String(i));
    if (pushed) expect(pushed.missingBlobs, what).toEqual([]);
    if (localTags(root).includes(`${fx.registry.host}/kill/app:${i}`)) expect(pushed, what).toBeDefined();

    // The next build succeeds, and afterwards nothing is left.
    const next = await runBuilder(buildArgs(root, i), { env: env() });
    expect(next.code, `${what}, then the next build: ${next.stderr}`).toBe(0);
    expect((await registryTag(fx.registry.host, 'kill/app', String(i)))?.missingBlobs, what).toEqual([]);
    expect(await leftBehind(root, tmp), `${what}, then the next build`).toEqual([]);
  }
  const summary = [...phases].sort().map(([k, n]) => `  ${k}: ${n}`).join('\n');
  console.log(`${KILLS} builds stopped in ${((Date.now() - t0) / 1000).toFixed(1)} s (seed ${SEED}):\n${summary}`);
}, 600_000);

/** Where kills land: the base image's pull (fresh state directories), then the steps of a build. */
const START = /^$/;
const PULL = /\] FROM /;
const PHASES = [/\] RUN /, /\] COPY /, /^exporting to image/, /^compressing layers/, /^pushing /];

function startedSteps(stderr: string): string[] {
  return events(stderr).flatMap((e) => (e.type === 'step' && e.status === 'started' ? [e.name] : []));
}

/** The kind of step that started last: where the build was when it was stopped. */
function lastStarted(stderr: string): string {
  const name = startedSteps(stderr).at(-1);
  return name === undefined ? 'start-up' : (/(FROM|RUN|COPY|exporting to image|compressing layers|pushing)/.exec(name)?.[1] ?? name);
}
