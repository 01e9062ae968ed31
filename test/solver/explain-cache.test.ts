// Why a step re-ran: one context edited step by step (the everyday edits: touch, byte change, mode
// change, ignored file, new file, rename, unrelated file, dependency manifest, build args, ENV,
// comment, base re-tag), each edit built by builder through the library API and, when a docker
// engine answers, by Docker's BuildKit with the same edits. The steps that re-run must be the same
// in both, and each re-run step's progress event must name the cause.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { build, explainCache } from '../../src/client/build.js';
import { MAX_LISTED_FILES } from '../../src/solver/explain.js';
import type { ProgressEvent, StepEvent } from '../../src/progress.js';
import { BUSYBOX_BIN, BUSYBOX_PATH_ENV, cachedLayout, populateBusybox, pushLayout } from '../helpers/base-image.js';
import { DOCKER, dockerSkipReason } from '../helpers/differential.js';
import { useBuildFixture } from '../helpers/fixture.js';

const fx = useBuildFixture('explain-cache');
const dockerSkip = dockerSkipReason();
if (dockerSkip) console.warn(`explain-cache: steps are not compared with BuildKit's: ${dockerSkip}`);

const run = promisify(execFile);

/** Steps numbered as BuildKit prints them; WORKDIR is unique per run so Docker's cache starts cold. */
function dockerfile(nonce: string, opts: { mode?: string; comment?: boolean; append?: boolean } = {}): string {
  return `FROM @@BASE@@
${opts.comment ? '# the dependencies first, so that editing sources keeps them cached\n' : ''}WORKDIR /app-${nonce}
COPY package.json ./
RUN cat package.json > /deps.txt
COPY src/ ./src/
ARG USED=one
RUN echo "$USED" > /used.txt
ENV MODE=${opts.mode ?? 'dev'}
RUN echo "$MODE" ${opts.append ? '>>' : '>'} /mode.txt
`;
}

const STEP = {
  workdir: '[2/7] WORKDIR',
  manifest: '[3/7] COPY package.json ./',
  install: '[4/7] RUN cat package.json',
  sources: '[5/7] COPY src/ ./src/',
  // Docker 20.10 names these with their variables expanded, builder as written (as later BuildKit).
  used: '[6/7] RUN echo',
  mode: '[7/7] RUN echo',
};

interface Edit {
  name: string;
  change: (ctx: string) => Promise<void>;
  buildArgs?: Record<string, string>;
  pull?: boolean;
  noCache?: boolean;
  /** Expected re-run steps (prefixes of their names), and the reason each gives (a substring). */
  reruns: Record<string, string | RegExp>;
  /** Steps of `reruns` that BuildKit keeps cached (a known difference). */
  cachedByBuildKit?: string[];
}

/** A step's name without its FROM digest and WORKDIR nonce, as compared between builders. */
const stepKey = (name: string) => Object.values(STEP).find((p) => name.startsWith(p)) ?? name;

interface Outcome {
  ran: Set<string>;
  reasons: Map<string, string | undefined>;
}

type BuildFlags = Pick<Edit, 'buildArgs' | 'pull' | 'noCache'>;

async function builderBuild(ctx: string, root: string, edit: BuildFlags): Promise<Outcome> {
  const events: ProgressEvent[] = [];
  await build({ context: ctx, root, network: 'none', ...(edit.buildArgs ? { buildArgs: edit.buildArgs } : {}), pull: edit.pull, noCache: edit.noCache, onProgress: (e) => events.push(e) });
  const started = events.filter((e): e is StepEvent => e.type === 'step' && e.status === 'started' && e.name.startsWith('['));
  return {
    ran: new Set(started.map((e) => stepKey(e.name)).filter((n) => !n.includes('] FROM '))),
    reasons: new Map(started.map((e) => [stepKey(e.name), e.reason])),
  };
}

/** Steps that BuildKit ran (not CACHED), from `--progress=plain`: `#6 [2/7] WORKDIR …` then `#6 DONE 0.1s`. */
async function dockerBuild(ctx: string, edit: BuildFlags, tag: string): Promise<Set<string>> {
  const args = ['build', '--network=none', '--progress=plain', '-t', tag];
  if (edit.pull) args.push('--pull');
  if (edit.noCache) args.push('--no-cache');
  for (const [k, v] of Object.entries(edit.buildArgs ?? {})) args.push('--build-arg', `${k}=${v}`);
  const { stderr } = await run(DOCKER, [...args, ctx], { env: { ...process.env, DOCKER_BUILDKIT: '1' }, maxBuffer: 16 << 20 });
  const names = new Map<string, string>();
  const ran = new Set<string>();
  for (const line of stderr.split('\n')) {
    const named = /^#(\d+) (\[.*)$/.exec(line);
    if (named && !names.has(named[1]!)) names.set(named[1]!, named[2]!);
    const done = /^#(\d+) DONE /.exec(line);
    const name = done && names.get(done[1]!);
    if (name && !name.includes('] FROM ') && !name.startsWith('[internal]')) ran.add(stepKey(name));
  }
  return ran;
}

const dockerTags: string[] = [];
afterAll(async () => {
  if (!dockerSkip && dockerTags.length > 0) await run(DOCKER, ['rmi', '-f', ...dockerTags]).catch(() => undefined);
});

describe('why a step re-ran', () => {
  it('re-runs the steps BuildKit re-runs for each kind of edit, each naming the first input that changed', { timeout: 600_000 }, async () => {
    const nonce = randomBytes(6).toString('hex');
    const ctx = join(fx.work, 'ctx');
    const root = join(fx.work, 'root');
    await mkdir(join(ctx, 'src'), { recursive: true });
    const writeDockerfile = (opts: Parameters<typeof dockerfile>[1] = {}) => writeFile(join(ctx, 'Dockerfile'), dockerfile(nonce, opts).replace('@@BASE@@', fx.base));
    await writeDockerfile();
    await writeFile(join(ctx, '.dockerignore'), 'src/*.log\n');
    await writeFile(join(ctx, 'package.json'), '{"dependencies":{"left-pad":"1.0.0"}}\n');
    await writeFile(join(ctx, 'src/app.js'), 'console.log("app")\n');
    await writeFile(join(ctx, 'src/debug.log'), 'noise\n');
    await writeFile(join(ctx, 'README.md'), 'about\n');
    const sourcesReRan = `parent step ${STEP.sources}`;

    // A different image under the base's tag: one more file in its layer.
    const busybox = await readFile(BUSYBOX_BIN);
    const retagged = await cachedLayout({
      name: 'busybox-retagged',
      inputs: [busybox, 'retagged'],
      populate: async (rootfs) => {
        await populateBusybox(rootfs);
        await writeFile(join(rootfs, 'etc', 'retagged'), 'yes\n');
      },
      cmd: ['sh'],
      env: [BUSYBOX_PATH_ENV],
    });

    const edits: Edit[] = [
      {
        name: 'first build',
        change: async () => undefined,
        reruns: Object.fromEntries(Object.values(STEP).map((s) => [s, 'no cache for this step yet'])),
      },
      {
        name: 'touch without change',
        change: async (dir) => {
          const later = new Date(Date.now() + 60_000);
          await utimes(join(dir, 'src/app.js'), later, later);
          await utimes(join(dir, 'package.json'), later, later);
        },
        reruns: {},
      },
      {
        name: 'byte change',
        change: (dir) => writeFile(join(dir, 'src/app.js'), 'console.log("App")\n'),
        reruns: { [STEP.sources]: 'src/app.js changed', [STEP.used]: sourcesReRan, [STEP.mode]: `parent step ${STEP.used}` },
      },
      {
        name: 'mode change',
        change: (dir) => chmod(join(dir, 'src/app.js'), 0o755),
        reruns: { [STEP.sources]: 'src/app.js mode changed', [STEP.used]: sourcesReRan, [STEP.mode]: `parent step ${STEP.used}` },
      },
      { name: 'ignored file', change: (dir) => writeFile(join(dir, 'src/debug.log'), 'more noise\n'), reruns: {} },
      {
        name: 'new file',
        change: (dir) => writeFile(join(dir, 'src/util.js'), 'export {}\n'),
        reruns: { [STEP.sources]: 'src/util.js added', [STEP.used]: sourcesReRan, [STEP.mode]: `parent step ${STEP.used}` },
      },
      {
        name: 'rename',
        change: async (dir) => {
          await writeFile(join(dir, 'src/helpers.js'), 'export {}\n');
          await rm(join(dir, 'src/util.js'));
        },
        reruns: { [STEP.sources]: 'src/helpers.js added, src/util.js removed', [STEP.used]: sourcesReRan, [STEP.mode]: `parent step ${STEP.used}` },
      },
      { name: 'file outside every COPY', change: (dir) => writeFile(join(dir, 'README.md'), 'about it\n'), reruns: {} },
      {
        name: 'dependency manifest',
        change: (dir) => writeFile(join(dir, 'package.json'), '{"dependencies":{"left-pad":"1.1.0"}}\n'),
        reruns: {
          [STEP.manifest]: 'package.json changed',
          [STEP.install]: `parent step ${STEP.manifest}`,
          [STEP.sources]: `parent step ${STEP.install}`,
          [STEP.used]: sourcesReRan,
          [STEP.mode]: `parent step ${STEP.used}`,
        },
      },
      {
        name: 'used build arg',
        change: async () => undefined,
        buildArgs: { USED: 'two' },
        reruns: { [STEP.used]: 'build arg or ENV USED changed', [STEP.mode]: `parent step ${STEP.used}` },
      },
      // Declared nowhere: BuildKit warns and keeps the cache (the arg reaches no step).
      { name: 'unused build arg', change: async () => undefined, buildArgs: { USED: 'two', UNUSED: 'x' }, reruns: {} },
      {
        name: 'ENV change',
        change: () => writeDockerfile({ mode: 'prod' }),
        buildArgs: { USED: 'two' },
        reruns: { [STEP.mode]: 'build arg or ENV MODE changed' },
      },
      { name: 'comment-only Dockerfile change', change: () => writeDockerfile({ mode: 'prod', comment: true }), buildArgs: { USED: 'two' }, reruns: {} },
      {
        name: 'instruction text change',
        change: () => writeDockerfile({ mode: 'prod', comment: true, append: true }),
        buildArgs: { USED: 'two' },
        reruns: { [STEP.mode]: 'instruction changed (command)' },
      },
      {
        name: '--no-cache',
        change: async () => undefined,
        buildArgs: { USED: 'two' },
        noCache: true,
        reruns: Object.fromEntries([STEP.workdir, STEP.manifest, STEP.install, STEP.sources, STEP.used, STEP.mode].map((s) => [s, '--no-cache'])),
        // Docker 20.10 prints WORKDIR CACHED under --no-cache: its frontend marks only RUN, COPY
        // and ADD to ignore the cache. builder's --no-cache applies to every step.
        cachedByBuildKit: [STEP.workdir],
      },
      {
        name: 'base re-tag',
        change: async () => {
          const tag = fx.base.slice(fx.base.lastIndexOf(':') + 1);
          const repo = fx.base.slice(fx.registry.host.length + 1, fx.base.lastIndexOf(':'));
          await pushLayout(retagged, fx.registry.host, repo, tag);
        },
        buildArgs: { USED: 'two' },
        pull: true,
        reruns: {
          '[1/7] FROM': /^base image changed: sha256:[0-9a-f]{12} → sha256:[0-9a-f]{12}$/,
          [STEP.workdir]: /^parent step \[1\/7\] FROM /,
          [STEP.manifest]: `parent step ${STEP.workdir}`,
          [STEP.install]: `parent step ${STEP.manifest}`,
          [STEP.sources]: `parent step ${STEP.install}`,
          [STEP.used]: sourcesReRan,
          [STEP.mode]: `parent step ${STEP.used}`,
        },
      },
    ];
    // The first build also runs WORKDIR.
    edits[0]!.reruns[STEP.workdir] = 'no cache for this step yet';

    for (const [i, edit] of edits.entries()) {
      await edit.change(ctx);
      const ours = await builderBuild(ctx, root, edit);
      const expected = Object.keys(edit.reruns).filter((s) => !s.includes('] FROM'));
      expect([...ours.ran].sort(), edit.name).toEqual(expected.sort());
      for (const [step, reason] of Object.entries(edit.reruns)) {
        const got = [...ours.reasons].find(([name]) => name.startsWith(step))?.[1];
        if (typeof reason === 'string') expect(got, `${edit.name}: ${step}`).toContain(reason);
        else expect(got, `${edit.name}: ${step}`).toMatch(reason);
      }
      if (!dockerSkip) {
        const tag = `builder-explain-${nonce}:${i}`;
        dockerTags.push(tag);
        const theirs = expected.filter((s) => !edit.cachedByBuildKit?.includes(s));
        expect([...(await dockerBuild(ctx, edit, tag))].sort(), `BuildKit, ${edit.name}`).toEqual(theirs.sort());
      }
    }

    // A step whose record is gone (pruned) says so rather than naming an input.
    await rm(join(root, 'cache', 'keys'), { recursive: true });
    await mkdir(join(root, 'cache', 'keys'));
    const pruned = await builderBuild(ctx, root, { buildArgs: { USED: 'two' } });
    expect(pruned.reasons.get(STEP.sources)).toBe('no cache for this step: its cache record was removed');
  });
});

describe('COPY --from a stage', () => {
  it('names the copied file that changed, also after a build that hit the cache by key', { timeout: 120_000 }, async () => {
    const ctx = join(fx.work, 'from-ctx');
    const root = join(fx.work, 'from-root');
    await mkdir(ctx, { recursive: true });
    const write = (text: string) => writeFile(join(ctx, 'Dockerfile'), `FROM ${fx.base} AS tools\nRUN echo ${text} > /out\nFROM ${fx.base}\nCOPY --from=tools /out /out\n`);
    await write('one');
    await builderBuild(ctx, root, {});
    await builderBuild(ctx, root, {});
    await write('two');
    const after = await builderBuild(ctx, root, {});
    expect(after.reasons.get('[tools 2/2] RUN echo two > /out')).toBe('instruction changed (command)');
    expect(after.reasons.get('[stage-1 2/2] COPY --from=tools /out /out')).toBe('out changed');
  });
});

describe('the Dockerfile named two ways', () => {
  it('explains the miss the same whether -f names it by an absolute or a relative path', { timeout: 120_000 }, async () => {
    const ctx = join(fx.work, 'spelling-ctx');
    const root = join(fx.work, 'spelling-root');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), `FROM ${fx.base}\nCOPY a.txt /\n`);
    await writeFile(join(ctx, 'a.txt'), 'a\n');
    const reasons = async (dockerfile: string) => {
      const events: ProgressEvent[] = [];
      await build({ context: ctx, dockerfile, root, network: 'none', onProgress: (e) => events.push(e) });
      return events.filter((e): e is StepEvent => e.type === 'step' && e.status === 'started').map((e) => [e.name, e.reason]);
    };
    await reasons(join(ctx, 'Dockerfile'));
    await writeFile(join(ctx, 'a.txt'), 'a, changed\n');
    expect(await reasons(relative(process.cwd(), join(ctx, 'Dockerfile')))).toContainEqual(['[2/2] COPY a.txt /', 'a.txt changed']);
  });
});

describe('a large COPY', () => {
  it(`past ${MAX_LISTED_FILES} files, records a digest per directory at the deepest level that fits and names the directory that changed`, { timeout: 120_000 }, async () => {
    const ctx = join(fx.work, 'large-ctx');
    const root = join(fx.work, 'large-root');
    // 40 packages of 30 files: one entry per package fits, one per file does not.
    for (let p = 0; p < 40; p++) {
      await mkdir(join(ctx, 'node_modules', `pkg${p}`), { recursive: true });
      await Promise.all(Array.from({ length: 30 }, (_, i) => writeFile(join(ctx, 'node_modules', `pkg${p}`, `f${i}.js`), `${p} ${i}\n`)));
    }
    await writeFile(join(ctx, 'Dockerfile'), `FROM ${fx.base}\nCOPY . /app/\n`);
    await builderBuild(ctx, root, {});
    const recorded = await readdir(join(root, 'cache', 'steps'));
    const sizes = await Promise.all(recorded.map(async (f) => (await stat(join(root, 'cache', 'steps', f))).size));
    // 1200 paths listed one by one would take about 100 KB.
    expect(Math.max(...sizes)).toBeLessThan(8192);

    await writeFile(join(ctx, 'node_modules', 'pkg7', 'f3.js'), 'changed\n');
    await writeFile(join(ctx, 'Dockerfile'), `FROM ${fx.base}\nCOPY . /app/\n# a comment\n`);
    const after = await builderBuild(ctx, root, {});
    expect(after.reasons.get('[2/2] COPY . /app/')).toBe('Dockerfile changed, files under node_modules/pkg7/ changed');
  });
});

/**
 * Every file of the state directory that holds build results, with its mtime: not the lock, the
 * digests of context files, nor `oci-layout` (rewritten, the same, each time the state is opened).
 */
async function stateFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    const rel = join(entry.parentPath, entry.name).slice(root.length + 1);
    if (!entry.isFile() || rel.startsWith('lock') || rel === 'dirty' || rel === 'oci-layout' || rel.startsWith(join('cache', 'context'))) continue;
    out.push(`${rel} ${(await stat(join(root, rel))).mtimeMs}`);
  }
  return out.sort();
}

describe('explainCache (--explain-cache)', () => {
  it('forecasts the steps the next build runs and why, and runs and writes nothing', { timeout: 120_000 }, async () => {
    const ctx = join(fx.work, 'forecast-ctx');
    const root = join(fx.work, 'forecast-root');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), `FROM ${fx.base}\nCOPY a.txt /\nRUN cat /a.txt > /b.txt\nCOPY c.txt /\nRUN echo done > /done\n`);
    await writeFile(join(ctx, 'a.txt'), 'a\n');
    await writeFile(join(ctx, 'c.txt'), 'c\n');
    await builderBuild(ctx, root, {});

    await writeFile(join(ctx, 'c.txt'), 'c, changed\n');
    const before = await stateFiles(root);
    const forecast = await explainCache({ context: ctx, root, network: 'none' });
    expect(await stateFiles(root)).toEqual(before);
    expect(forecast.map((s) => [s.name.replace(/FROM .*/, 'FROM'), s.cached, s.reason])).toEqual([
      ['[1/5] FROM', true, undefined],
      ['[2/5] COPY a.txt /', true, undefined],
      ['[3/5] RUN cat /a.txt > /b.txt', true, undefined],
      ['[4/5] COPY c.txt /', false, 'c.txt changed'],
      ['[5/5] RUN echo done > /done', false, 'parent step [4/5] COPY c.txt / would re-run'],
    ]);

    // The build itself runs exactly those, for the same reasons.
    const built = await builderBuild(ctx, root, {});
    expect([...built.reasons]).toEqual(forecast.filter((s) => !s.cached).map((s) => [s.name, s.reason?.replace('would re-run', 're-ran')]));
  });
});
