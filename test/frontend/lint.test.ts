// Lints: warnings with a rule name, never failures; printed one line each, rule first.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBuilder } from '../helpers/cli.js';
import { build, rejection } from './helpers.js';

async function lints(text: string, buildArgs: Record<string, string> = {}) {
  const r = await build(text, { buildArgs });
  return r.warnings.filter((w) => w.rule).map((w) => [w.rule, w.line, w.message] as const);
}

describe('lints', () => {
  it('FromWithoutTag: FROM an image without tag or digest', async () => {
    expect(await lints('FROM alpine\nCMD ["sh"]')).toEqual([['FromWithoutTag', 1, expect.stringContaining('FROM alpine has no tag, so it means alpine:latest')]]);
    expect(await lints('FROM alpine:3.19\nCMD ["sh"]')).toEqual([]);
    expect(await lints(`FROM alpine@sha256:${'a'.repeat(64)}\nCMD ["sh"]`)).toEqual([]);
    expect(await lints('FROM scratch\nCOPY a /a')).toEqual([]);
    expect(await lints('FROM alpine:3.19 AS a\nFROM a\nCMD ["sh"]')).toEqual([]);
  });

  it('JSONArgsRecommended: shell-form CMD and ENTRYPOINT', async () => {
    expect(await lints('FROM alpine:3.19\nCMD echo hi\nENTRYPOINT exec app')).toEqual([
      ['JSONArgsRecommended', 2, expect.stringContaining('CMD in shell form runs under "/bin/sh -c"')],
      ['JSONArgsRecommended', 3, expect.stringContaining('ENTRYPOINT in shell form')],
    ]);
    expect(await lints('FROM alpine:3.19\nCMD ["echo", "hi"]')).toEqual([]);
    // The message names the shell the command really runs under: the stage's SHELL when set.
    expect(await lints('FROM alpine:3.19\nSHELL ["/bin/bash", "-eo", "pipefail", "-c"]\nCMD echo hi')).toEqual([
      ['JSONArgsRecommended', 3, expect.stringContaining('CMD in shell form runs under "/bin/bash -eo pipefail -c"')],
    ]);
  });

  it('CopyAllBeforeInstall: COPY . . before a dependency install', async () => {
    expect(await lints('FROM node:20\nWORKDIR /app\nCOPY . .\nRUN npm ci\nCMD ["node", "."]')).toEqual([
      ['CopyAllBeforeInstall', 3, expect.stringContaining('"COPY . ." comes before the dependency install "npm ci" (line 4)')],
    ]);
    expect(await lints('FROM node:20\nCOPY . /src\nRUN pip install -r /src/requirements.txt\nCMD ["python"]')).toHaveLength(1);
    // The recommended order is quiet.
    expect(await lints('FROM node:20\nCOPY package.json package-lock.json ./\nRUN npm ci\nCOPY . .\nRUN npm run build\nCMD ["node", "."]')).toEqual([]);
  });

  it('UndefinedVar: a variable neither in the environment nor declared as ARG', async () => {
    expect(await lints('FROM alpine:3.19\nENV A=1\nWORKDIR /srv/$A/$NOPE\nCMD ["sh"]')).toEqual([
      ['UndefinedVar', 3, expect.stringContaining('usage of undefined variable "$NOPE"')],
    ]);
    expect(await lints('FROM alpine:3.19\nENV path_x=1\nLABEL a=$PATH_X\nCMD ["sh"]')).toEqual([
      ['UndefinedVar', 3, expect.stringContaining('(did you mean $path_x?)')],
    ]);
    // A declared ARG without a value is not undefined; RUN is expanded by the shell, not here.
    expect(await lints('FROM alpine:3.19\nARG V\nENV X=$V\nRUN echo $UNSET\nCMD ["sh"]')).toEqual([]);
    expect(await lints('FROM alpine:3.19\nENV X=${UNSET:-default}\nCMD ["sh"]')).toEqual([]);
  });

  it('SecretsUsedInArgOrEnv: ARG and ENV names that look like secrets, with BuildKit\'s words and allow-list', async () => {
    const text = [
      'ARG GLOBAL_TOKEN',
      'FROM alpine:3.19',
      'ARG API_TOKEN',
      'ARG AUTHOR TOKENIZER SECRET_VERSION',
      'ENV db_password=hunter2 PUBLIC_KEY=pk GPG_KEY_FILE=/k',
      'ARG apikey=default-key',
      'ENV AWS_SECRET_ACCESS_KEY=abc Auth=x',
      'CMD ["sh"]',
    ].join('\n');
    const found = await lints(text, { API_TOKEN: 'tok-3f9a', GLOBAL_TOKEN: 'g' });
    const message = (what: string) =>
      `Do not use ARG or ENV instructions for sensitive data (${what}): its value is kept in the image's config or history, readable by anyone who can pull the image`;
    expect(found).toEqual([
      ['SecretsUsedInArgOrEnv', 3, message('ARG "API_TOKEN"')],
      ['SecretsUsedInArgOrEnv', 5, message('ENV "db_password"')],
      ['SecretsUsedInArgOrEnv', 6, message('ARG "apikey"')],
      ['SecretsUsedInArgOrEnv', 7, message('ENV "AWS_SECRET_ACCESS_KEY"')],
      ['SecretsUsedInArgOrEnv', 7, message('ENV "Auth"')],
    ]);
    for (const value of ['tok-3f9a', 'hunter2', 'default-key', 'abc']) expect(JSON.stringify(found)).not.toContain(value);
    expect(await lints(`# check=skip=SecretsUsedInArgOrEnv\n${text}`)).toEqual([]);
  });

  it('lints never fail the build', async () => {
    const r = await build('FROM node\nCOPY . .\nRUN npm install\nLABEL x=$NOPE\nCMD npm start');
    expect(r.warnings.filter((w) => w.rule).map((w) => w.rule).sort()).toEqual(['CopyAllBeforeInstall', 'FromWithoutTag', 'JSONArgsRecommended', 'UndefinedVar']);
    expect(r.definition.vertices.size).toBeGreaterThan(0);
  });
});

describe('# check= directive', () => {
  it('skip=Rule,Rule silences those lints; skip=all silences every lint', async () => {
    expect((await lints('# check=skip=FromWithoutTag\nFROM alpine\nCMD echo')).map((l) => l[0])).toEqual(['JSONArgsRecommended']);
    expect(await lints('# check=skip=all\nFROM alpine\nCMD echo')).toEqual([]);
  });

  it('error=true makes lints fail the build, naming them', async () => {
    const err = await rejection(build('# check=error=true\nFROM alpine:3.19\nCMD echo hi'));
    expect(err.message).toMatch(/^Dockerfile:3: lint violations fail the build \(# check=error=true\): JSONArgsRecommended on line 3/);
    await expect(build('# check=skip=JSONArgsRecommended;error=true\nFROM alpine:3.19\nCMD echo hi')).resolves.toBeTruthy();
  });
});

describe('printed lints', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'builder-lint-'));
    await writeFile(join(dir, 'Dockerfile'), 'FROM scratch\nARG API_TOKEN\nCOPY Dockerfile /\nCMD echo "$API_TOKEN"\n');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const expected = [
    `WARN: SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG "API_TOKEN"): its value is kept in the image's config or history, readable by anyone who can pull the image (Dockerfile:2)`,
    `WARN: JSONArgsRecommended: CMD in shell form runs under "/bin/sh -c": the process does not receive OS signals such as SIGTERM; prefer the JSON form, e.g. CMD ["executable", "arg"] (Dockerfile:4)`,
  ];

  it('a build and a dry run print each lint on one line, rule first, never the secret', async () => {
    for (const extra of [['--dry-run'], ['--progress', 'plain']]) {
      const args = ['build', ...extra, '--root', join(dir, 'root'), '--build-arg', 'API_TOKEN=tok-3f9a', '--build-arg', 'UNUSED=1', '.'];
      const r = await runBuilder(args, { cwd: dir });
      expect(r.code, r.stderr).toBe(0);
      // A warning that is not a lint keeps its own form.
      const unused = 'WARNING: build arg "UNUSED" was not consumed: no ARG UNUSED in the stages built';
      expect(r.stderr.split('\n').filter((l) => l.startsWith('WARN'))).toEqual([...expected, unused]);
      expect(r.stderr + r.stdout).not.toContain('tok-3f9a');
    }
  });
});
