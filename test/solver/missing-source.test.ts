// A COPY or ADD source that is not there fails its step like any other step error: the step is
// reported as failed, and the error names the Dockerfile, the line and shows it, with BuildKit's
// wording (`failed to compute cache key: "/missing.txt" not found`). A wildcard that matches
// nothing is not an error, as in BuildKit (and Docker 20.10).

import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build, DockerfileError, SourceNotFoundError, StepError, type ProgressEvent } from '../../src/index.js';
import { runBuilder } from '../helpers/cli.js';

let work: string;
let n = 0;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'builder-missing-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A context holding a.txt and `Dockerfile.dev` with `text`. */
async function context(text: string): Promise<string> {
  const ctx = join(work, `ctx-${++n}`);
  await mkdir(ctx);
  await writeFile(join(ctx, 'a.txt'), 'a\n');
  await writeFile(join(ctx, 'Dockerfile.dev'), text);
  return ctx;
}

const root = () => join(work, 'root');

async function tagged(): Promise<string[]> {
  const index = JSON.parse(await readFile(join(root(), 'index.json'), 'utf8')) as { manifests: Array<{ annotations?: Record<string, string> }> };
  return index.manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name'] ?? '');
}

const cases: Array<[string, string, number, string]> = [
  ['COPY', 'FROM scratch\nCOPY a.txt /\nCOPY missing.txt /\n', 3, 'COPY missing.txt /'],
  ['ADD', 'FROM scratch\nCOPY a.txt /\nADD sub/missing.txt /x\n', 3, 'ADD sub/missing.txt /x'],
  ['COPY --from a stage', 'FROM scratch AS s\nCOPY a.txt /\nFROM scratch\nCOPY --from=s /missing.txt /\n', 4, 'COPY --from=s /missing.txt /'],
];

describe('a missing COPY source, from the CLI', () => {
  it.each(cases)('%s: the step fails, and the error names the file and line and shows the line', async (_kind, text, line, source) => {
    const ctx = await context(text);
    const r = await runBuilder(['build', '--root', root(), '--progress', 'plain', '-t', `missing:${n}`, '-f', 'Dockerfile.dev', '.'], { cwd: ctx });
    expect(r.code).toBe(1);
    const path = /(\S*missing\.txt)/.exec(source)![1]!.replace(/^\/?/, '/');
    // The step is numbered and named in progress, then marked failed, as BuildKit's `#5 ERROR:`.
    expect(r.stderr).toMatch(new RegExp(`#(\\d+) \\[[^\\]]+\\] ${source.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\n#\\1 ERROR: failed to compute cache key: "${path}" not found\\n`));
    const error = r.stderr.slice(r.stderr.lastIndexOf('ERROR: '));
    expect(error).toBe(`ERROR: Dockerfile.dev:${line}: failed to compute cache key: "${path}" not found\n  ${line} | ${source}\n`);
    expect(await tagged()).not.toContain(`docker.io/library/missing:${n}`);
  });

  it('a wildcard that matches nothing copies nothing and succeeds, as in BuildKit', async () => {
    const ctx = await context('FROM scratch\nCOPY a.txt nomatch*.txt /\n');
    const r = await runBuilder(['build', '--root', root(), '--progress', 'plain', '-t', 'wildcard:1', '-f', 'Dockerfile.dev', '.'], { cwd: ctx });
    expect(r.code, r.stderr).toBe(0);
    expect(await tagged()).toContain('docker.io/library/wildcard:1');
  });
});

describe('a missing COPY source, from the library', () => {
  it('rejects with a DockerfileError whose cause is the failed step, caused by the missing path', async () => {
    const ctx = await context('FROM scratch\nCOPY a.txt /\nCOPY missing.txt /\n');
    const events: ProgressEvent[] = [];
    const err = await build({ context: ctx, dockerfile: join(ctx, 'Dockerfile.dev'), root: root(), onProgress: (e) => events.push(e) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DockerfileError);
    const dfErr = err as DockerfileError;
    expect({ file: dfErr.file, line: dfErr.line, reason: dfErr.reason, source: dfErr.source }).toEqual({
      file: join(ctx, 'Dockerfile.dev'),
      line: 3,
      reason: 'failed to compute cache key: "/missing.txt" not found',
      source: ['COPY missing.txt /'],
    });
    const step = dfErr.cause as StepError;
    expect(step).toBeInstanceOf(StepError);
    expect(step.meta.name).toBe('[2/2] COPY missing.txt /');
    expect(step.cause).toBeInstanceOf(SourceNotFoundError);
    expect((step.cause as SourceNotFoundError).path).toBe('missing.txt');
    expect(events.filter((e) => e.type === 'step' && e.status === 'error')).toEqual([
      expect.objectContaining({ name: '[2/2] COPY missing.txt /', error: 'failed to compute cache key: "/missing.txt" not found', line: 3 }),
    ]);
  });
});
