// `builder run`, `ps` and `rm` as a user runs them: the real CLI and real runc, on busybox images
// built into a state directory of the test's own (from scratch: no registry needed).

import { spawn, spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSnapshotter } from '../../src/snapshotter/index.js';
import { BUSYBOX_BIN, BUSYBOX_FROM_SCRATCH } from '../helpers/base-image.js';
import { BUILDER_BIN, leftoverContainers, mountsUnder, runBuilder, startBuilder, type CliResult } from '../helpers/cli.js';

let work: string;
let root: string;
const IMAGE = 'app-test';

/** `builder run --root ROOT ARGS…`, with `input` on its stdin when given. */
function runIn(args: string[], input?: string): Promise<CliResult> {
  const child = spawn(BUILDER_BIN, ['run', '--root', root, ...args], { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  child.stdout!.on('data', (d: Buffer) => (out.stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out.stderr += d.toString()));
  if (input !== undefined) child.stdin!.end(input);
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, ...out })));
}

/** Active snapshots (containers' writable layers) in the state directory. */
async function activeSnapshots(): Promise<string[]> {
  return (await (await createSnapshotter(root)).list()).filter((s) => s.kind === 'active').map((s) => s.key);
}

/** What a --rm run must not leave: runc containers, mounts, active snapshots, container records. */
async function expectNothingLeft(): Promise<void> {
  expect(leftoverContainers(root)).toEqual([]);
  expect(mountsUnder(root)).toEqual([]);
  expect(await activeSnapshots()).toEqual([]);
  expect(await readdir(join(root, 'containers')).catch(() => [])).toEqual([]);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'builder-run-'));
  root = join(work, 'root');
  const ctx = join(work, 'ctx');
  await mkdir(ctx);
  await copyFile(BUSYBOX_BIN, join(ctx, 'busybox'));
  await writeFile(
    join(ctx, 'Dockerfile.dev'),
    `${BUSYBOX_FROM_SCRATCH}ENV PATH=/bin FOO=image KEEP=kept
WORKDIR /home
CMD ["sh"]
`,
  );
  await writeFile(join(ctx, 'Dockerfile.ep'), `FROM ${IMAGE}\nENTRYPOINT ["echo", "ep"]\nCMD ["default"]\n`);
  for (const [tag, file] of [[IMAGE, 'Dockerfile.dev'], ['app-ep', 'Dockerfile.ep']]) {
    const built = await runBuilder(['build', '--root', root, '--network', 'none', '--progress', 'quiet', '-t', tag!, '-f', join(ctx, file!), ctx]);
    expect(built.code, built.stderr).toBe(0);
  }
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('builder run', () => {
  it("propagates the container's exit code, as the course's build-then-test pair needs, and leaves nothing with --rm", async () => {
    const r = await runIn(['--rm', IMAGE, 'sh', '-c', 'echo out; echo err >&2; exit 3']);
    expect(r).toMatchObject({ code: 3, stdout: 'out\n', stderr: 'err\n' });
    await expectNothingLeft();
  });

  it('exits 127 for a command not found, 126 for one that cannot be invoked, 125 for its own errors', async () => {
    expect((await runIn(['--rm', IMAGE, 'nosuchcommand'])).code).toBe(127);
    expect((await runIn(['--rm', IMAGE, '/etc/passwd'])).code).toBe(126);
    const missing = await runIn(['--rm', 'no-such-image', 'true']);
    expect(missing.code).toBe(125);
    expect(missing.stderr).toContain('no such image in the local store: no-such-image');
    expect((await runIn(['--rm', '--bogus', IMAGE, 'true'])).code).toBe(125);
    await expectNothingLeft();
  });

  it('applies -e and --env-file over the image ENV, and -w and -u over WORKDIR and USER', async () => {
    const envFile = join(work, 'app.env');
    await writeFile(envFile, '# settings\nFROMFILE=file value\nFOO=from-file\nHOST_ONLY\n');
    const r = await runIn(
      ['--rm', '--env-file', envFile, '-e', 'FOO=flag', '-e', 'KEEP', '-w', '/tmp/new', '-u', 'app', IMAGE, 'sh', '-c', 'echo "$FOO|$FROMFILE|${KEEP-unset}|$HOST_ONLY|$(pwd)|$(id -u):$(id -g)|$HOME"'],
    );
    expect(r.stderr).toBe('');
    // KEEP alone, unset in this environment, removes the image's KEEP (as docker run -e does).
    expect(r.stdout).toBe(`flag|file value|unset|${process.env.HOST_ONLY ?? ''}|/tmp/new|1000:1000|/home/app\n`);
    const bad = join(work, 'bad.env');
    await writeFile(bad, 'OK=1\nBAD NAME=2\n');
    const refused = await runIn(['--rm', '--env-file', bad, IMAGE, 'true']);
    expect(refused.code).toBe(125);
    expect(refused.stderr).toContain(`${bad}, line 2: variable name "BAD NAME" contains whitespace`);
  });

  it('uses the image WORKDIR, ENTRYPOINT and CMD; --entrypoint replaces them, "" clears', async () => {
    expect((await runIn(['--rm', IMAGE, 'pwd'])).stdout).toBe('/home\n');
    expect((await runIn(['--rm', 'app-ep'])).stdout).toBe('ep default\n');
    expect((await runIn(['--rm', 'app-ep', 'a', 'b'])).stdout).toBe('ep a b\n');
    expect((await runIn(['--rm', '--entrypoint', 'sh', 'app-ep', '-c', 'echo $0'])).stdout).toBe('sh\n');
    expect((await runIn(['--rm', '--entrypoint', '', 'app-ep', 'echo', 'hi'])).stdout).toBe('hi\n');
    const none = await runIn(['--rm', '--entrypoint', '', 'app-ep']);
    expect(none.code).toBe(125);
    expect(none.stderr).toContain('no command specified');
  });

  it('attaches stdin with -i, and gives a terminal with -t', async () => {
    expect(await runIn(['--rm', '-i', IMAGE, 'sh', '-c', 'tr a-z A-Z'], 'hello\nworld\n')).toMatchObject({ code: 0, stdout: 'HELLO\nWORLD\n' });
    const tty = await runIn(['--rm', '-t', IMAGE, 'sh', '-c', '[ -t 0 ] && [ -t 1 ] && echo "tty $TERM"; exit 4']);
    expect(tty).toMatchObject({ code: 4, stdout: 'tty xterm\r\n' });
  });

  it('-it in a real terminal (tmux): an interactive shell with the window size, resized with it', async () => {
    const socket = `builder-run-test-${process.pid}`;
    const tmux = (...args: string[]) => spawnSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' });
    const screen = () => tmux('capture-pane', '-p').stdout;
    const waitFor = async (pattern: RegExp) => {
      const t0 = Date.now();
      while (!pattern.test(screen()) && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 100));
      expect(screen()).toMatch(pattern);
    };
    const command = `${BUILDER_BIN} run --root ${root} --rm -it ${IMAGE} sh; echo "exit=$?"; sleep 60`;
    expect(tmux('new-session', '-d', '-x', '80', '-y', '24', command).status).toBe(0);
    try {
      await waitFor(/^\/home #/m);
      tmux('send-keys', 'stty size; echo $((6*7))', 'Enter');
      await waitFor(/^24 80\n42$/m);
      tmux('resize-window', '-x', '100', '-y', '30');
      tmux('send-keys', 'stty size', 'Enter');
      await waitFor(/^30 100$/m);
      tmux('send-keys', 'exit 3', 'Enter');
      await waitFor(/^exit=3$/m);
    } finally {
      tmux('kill-server');
    }
    await expectNothingLeft();
  });

  it('bind-mounts a host directory with -v; :ro refuses writes', async () => {
    const dir = join(work, 'src');
    await mkdir(dir);
    expect((await runIn(['--rm', '-v', `${dir}:/app`, IMAGE, 'sh', '-c', 'echo written > /app/out.txt'])).code).toBe(0);
    expect(await readFile(join(dir, 'out.txt'), 'utf8')).toBe('written\n');
    const ro = await runIn(['--rm', '-v', `${dir}:/app:ro`, IMAGE, 'sh', '-c', 'cat /app/out.txt; echo again > /app/ro.txt']);
    expect(ro.stdout).toBe('written\n');
    expect(ro.stderr).toContain('Read-only file system');
    expect(ro.code).not.toBe(0);
    const missing = await runIn(['--rm', '-v', `${join(work, 'nope')}:/app`, IMAGE, 'true']);
    expect(missing.code).toBe(125);
    expect(missing.stderr).toContain(`the host path ${join(work, 'nope')} does not exist`);
    await expectNothingLeft();
  });

  it('forwards Ctrl-C to the container: a process that handles it exits with its own code', async () => {
    const child = startBuilder(['run', '--root', root, '--rm', IMAGE, 'sh', '-c', 'trap "echo stopping; exit 5" INT; echo ready; while :; do sleep 0.1; done']);
    await waitForStdout(child, 'ready');
    child.kill('SIGINT');
    expect(await child.closed).toMatchObject({ code: 5, stdout: 'ready\nstopping\n' });
    await expectNothingLeft();
  });

  it('kills a container that ignores Ctrl-C after --stop-timeout, exits 130 and leaves nothing', async () => {
    const child = startBuilder(['run', '--root', root, '--rm', '--stop-timeout', '1', IMAGE, 'sh', '-c', 'echo ready; exec sleep 60']);
    await waitForStdout(child, 'ready');
    child.kill('SIGINT');
    expect((await child.closed).code).toBe(130);
    await expectNothingLeft();
  });
});

describe('builder ps and rm', () => {
  it('keeps a container run without --rm (a later build does not sweep it) until builder rm', async () => {
    const r = await runIn(['--name', 'kept', IMAGE, 'sh', '-c', 'echo data > /home/file; exit 4']);
    expect(r.code).toBe(4);
    const ps = await runBuilder(['ps', '-a', '--root', root]);
    expect(ps.stdout).toMatch(/"sh -c echo data > \/home\/file; exit 4".*Exited \(4\).*kept\n$/);
    expect((await runBuilder(['ps', '--root', root])).stdout.split('\n').filter(Boolean)).toHaveLength(1); // the header: nothing runs
    const conflict = await runIn(['--name', 'kept', IMAGE, 'true']);
    expect(conflict.code).toBe(125);
    expect(conflict.stderr).toContain('the container name "kept" is already in use');
    // The run let go of the state directory leaving the dirty mark: this build sweeps, and keeps it.
    const built = await runBuilder(['build', '--root', root, '--network', 'none', '--progress', 'quiet', '-t', 'other', '-f', join(work, 'ctx', 'Dockerfile.dev'), join(work, 'ctx')]);
    expect(built.code, built.stderr).toBe(0);
    expect(await activeSnapshots()).toHaveLength(1);

    const removed = await runBuilder(['rm', '--root', root, 'kept']);
    expect(removed).toMatchObject({ code: 0, stdout: 'kept\n' });
    expect(await activeSnapshots()).toEqual([]);
    expect((await runBuilder(['ps', '-aq', '--root', root])).stdout).toBe('');
    const again = await runBuilder(['rm', '--root', root, 'kept']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('no such container: kept');
  });
});

async function waitForStdout(child: ReturnType<typeof startBuilder>, text: string): Promise<void> {
  const t0 = Date.now();
  while (!child.output.stdout.includes(text) && child.exitCode === null && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 20));
  if (!child.output.stdout.includes(text)) throw new Error(`never saw ${text}: ${child.output.stderr}`);
}
