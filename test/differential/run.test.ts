// `builder run` against `docker run`: one image built by each from the same context, then the
// same command lines through both, comparing what a user sees (stdout and exit code). Skipped
// without a docker engine.

import { spawnSync } from 'node:child_process';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUSYBOX_BIN, BUSYBOX_FROM_SCRATCH } from '../helpers/base-image.js';
import { BUILDER_BIN } from '../helpers/cli.js';
import { DOCKER, dockerSkipReason, tool } from '../helpers/differential.js';

const skip = dockerSkipReason();
const DOCKERFILE = `${BUSYBOX_FROM_SCRATCH}ENV PATH=/bin FOO=image KEEP=kept
WORKDIR /home
ENTRYPOINT ["sh", "-c", "echo \\"entry $0 $*\\"; [ -z \\"$STATUS\\" ] || exit $STATUS", "first"]
CMD ["default", "cmd"]
`;

/** Command lines run through both (after `run --rm --network none`); `@ENVFILE@` is an env file. */
const CASES: string[][] = [
  ['IMG'],
  ['IMG', 'a', 'b'],
  ['-e', 'STATUS=3', 'IMG'],
  ['--entrypoint', 'sh', 'IMG', '-c', 'echo "$FOO $KEEP $(pwd) $(id -u) $HOME"'],
  ['--entrypoint', '', 'IMG', 'sh', '-c', 'echo "[$FOO] [${KEEP-unset}] [$FROMFILE] [$HOST_VAR] [${HOST_UNSET-unset}]"'],
  ['--env-file', '@ENVFILE@', '-e', 'FOO=flag', '-e', 'KEEP', '-e', 'HOST_VAR', '--entrypoint', 'sh', 'IMG', '-c', 'echo "$FOO|${KEEP-unset}|$FROMFILE|$HOST_VAR|${HOST_UNSET-unset}"'],
  ['-w', '/tmp/made', '-u', 'app', '--entrypoint', 'sh', 'IMG', '-c', 'echo "$(pwd) $(id) $HOME"'],
  ['-u', '1000:0', '--entrypoint', 'id', 'IMG'],
  ['--entrypoint', 'id', 'IMG'],
  ['--entrypoint', 'nosuchcommand', 'IMG'],
  ['--entrypoint', '/etc/passwd', 'IMG'],
  ['--entrypoint', '', 'IMG'],
];

describe.skipIf(skip !== undefined)(`builder run vs docker run${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let work: string;
  let root: string;
  let envFile: string;
  const dockerTag = `builder-run-diff-${process.pid}`;
  const env: NodeJS.ProcessEnv = { ...process.env, HOST_VAR: 'from-host' };
  delete env.HOST_UNSET;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'builder-run-diff-'));
    root = join(work, 'root');
    await copyFile(BUSYBOX_BIN, join(work, 'busybox'));
    await writeFile(join(work, 'Dockerfile'), DOCKERFILE);
    envFile = join(work, 'app.env');
    await writeFile(envFile, '# comment\nFROMFILE=file value \nHOST_VAR\nHOST_UNSET\n');
    tool(DOCKER, ['build', '--network=none', '-q', '-t', dockerTag, work], { DOCKER_BUILDKIT: '1' });
    tool(BUILDER_BIN, ['build', '--root', root, '--network', 'none', '--progress', 'quiet', '-t', dockerTag, work]);
  });

  afterAll(async () => {
    spawnSync(DOCKER, ['rmi', '-f', dockerTag]);
    if (work) await rm(work, { recursive: true, force: true });
  });

  it.each(CASES.map((c) => [c.join(' '), c]))('%s', (_name, args) => {
    const line = (args as string[]).map((a) => (a === 'IMG' ? dockerTag : a === '@ENVFILE@' ? envFile : a));
    const run = (cmd: string, options: string[]) => {
      const r = spawnSync(cmd, ['run', ...options, '--rm', '--network', 'none', ...line], { encoding: 'utf8', env });
      return { code: r.status, stdout: r.stdout };
    };
    expect(run(BUILDER_BIN, ['--root', root])).toEqual(run(DOCKER, []));
  });
});
