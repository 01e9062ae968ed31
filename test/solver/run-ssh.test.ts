// RUN --mount=type=ssh in a real build: a real ssh-agent holding a throwaway key (and a key file
// served by builder's own agent) reaches `ssh-add -l` inside the step, through the CLI's --ssh and
// the library's `ssh` option; nothing of the agent is left in the image.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/client/build.js';
import { runBuilder } from '../helpers/cli.js';
import { useBuildFixture } from '../helpers/fixture.js';
import { unpackOciArchive } from '../helpers/oci-tar.js';
import { pushSshImage } from '../helpers/ssh-image.js';

const fx = useBuildFixture('run-ssh');

let image: string;
let key: string;
let fingerprint: string;
let agent: ChildProcess;
let sock: string;

beforeAll(async () => {
  image = (await pushSshImage(fx.registry.host)).ref;
  key = join(fx.work, 'id_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'builder-test', '-f', key]);
  fingerprint = execFileSync('ssh-keygen', ['-l', '-f', `${key}.pub`], { encoding: 'utf8' }).split(' ')[1]!;
  sock = join(fx.work, 'agent.sock');
  agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    agent.once('error', reject);
    agent.stdout!.once('data', () => resolve());
  });
  execFileSync('ssh-add', [key], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stdio: 'ignore' });
});

afterAll(() => {
  agent?.kill('SIGKILL');
});

async function context(name: string, dockerfile: string): Promise<string> {
  const dir = join(fx.work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), dockerfile);
  return dir;
}

describe('RUN --mount=type=ssh', () => {
  it('forwards the caller\'s agent (--ssh default, SSH_AUTH_SOCK) and a key file (--ssh id=KEY)', async () => {
    const ctx = await context(
      'cli',
      `FROM ${image}
RUN --mount=type=ssh ssh-add -l > /from-agent && echo "$SSH_AUTH_SOCK" > /sock-path
RUN --mount=type=ssh,id=deploy,target=/tmp/deploy.sock SSH_AUTH_SOCK=/tmp/deploy.sock ssh-add -l > /from-key
`,
    );
    const out = join(fx.work, 'cli-out');
    const r = await runBuilder(
      ['build', '--network', 'none', '--root', join(fx.work, 'cli-root'), '--ssh', 'default', '--ssh', `deploy=${key}`, '-o', `type=oci,dest=${out}.tar`, '-t', 'ssh:1', ctx],
      { env: { SSH_AUTH_SOCK: sock } },
    );
    expect(r.code, r.stderr).toBe(0);
    const fs = await unpackOciArchive(`${out}.tar`, fx.work, 'cli');
    expect(await readFile(join(fs, 'from-agent'), 'utf8')).toContain(fingerprint);
    expect(await readFile(join(fs, 'from-key'), 'utf8')).toContain(fingerprint);
    expect(await readFile(join(fs, 'sock-path'), 'utf8')).toBe('/run/buildkit/ssh_agent.0\n');
    // Neither the socket nor its directories stay in the image.
    expect(await readdir(fs)).not.toContain('run');
    expect(await readdir(join(fs, 'tmp'))).toEqual([]);
  });

  it('a required agent that was not given fails the step, an optional one is just absent', async () => {
    const ctx = await context('required', `FROM ${image}\nRUN --mount=type=ssh,id=absent if [ -e /run/buildkit/ssh_agent.0 ]; then exit 1; fi\nRUN --mount=type=ssh,id=needed,required true\n`);
    await expect(build({ context: ctx, root: join(fx.work, 'required-root'), network: 'none' })).rejects.toThrow(/"needed"/);
  });

  it('a bad --ssh fails before the build starts, naming the path', async () => {
    const ctx = await context('bad', `FROM ${image}\nRUN --mount=type=ssh true\n`);
    const r = await runBuilder(['build', '--root', join(fx.work, 'bad-root'), '--ssh', `default=${join(fx.work, 'no-such-key')}`, ctx]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('no-such-key');
    expect(r.stderr).not.toMatch(/^#\d/m);
  });
});
