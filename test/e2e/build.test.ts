// End to end, as a user runs it: the real CLI, a real registry on 127.0.0.1, real runc, and
// independent tools (skopeo, umoci) to look at what was produced.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { events, finished, leftoverContainers, mountsUnder, run, runBuilder, startBuilder, stepsByStatus, waitForStderr } from '../helpers/cli.js';
import { useBuildFixture } from '../helpers/fixture.js';

const fx = useBuildFixture('e2e');

async function writeTree(dir: string, files: Record<string, string>): Promise<void> {
  for (const [name, content] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), content);
  }
}

function seedDockerfile(baseRef: string): string {
  return `# the seed's multi-stage example
FROM ${baseRef} AS builder
WORKDIR /app
COPY package.json .
RUN mkdir -p node_modules && cp package.json node_modules/.installed && echo installed

COPY . .
RUN mkdir -p build \\
 && cp src/* build/ \\
 && echo "built $(ls src | wc -l) files" > build/VERSION

FROM ${baseRef}
ENV GREETING=hello MODE=production
COPY --from=builder /app/build /usr/share/www
WORKDIR /usr/share/www
CMD ["cat", "/usr/share/www/index.html"]
`;
}

describe('builder build: the seed multi-stage example', () => {
  let ctx: string;
  let root: string;
  const tag = () => `${fx.registry.host}/user/app:1.2`;
  const pushedDigest = (stdout: string) => /@(sha256:[a-f0-9]{64})/.exec(stdout)?.[1];
  let firstPush: string | undefined;
  const buildArgs = () => ['build', '--network', 'none', '--root', root, '--progress', 'json', '-t', tag(), '-f', join(ctx, 'Dockerfile.dev'), '--push', ctx];

  beforeAll(async () => {
    ctx = join(fx.work, 'seed');
    root = join(fx.work, 'seed-root');
    await writeTree(ctx, {
      'Dockerfile.dev': seedDockerfile(fx.base),
      'package.json': '{"name":"site","dependencies":{"a":"1.0.0"}}\n',
      'src/index.html': '<h1>hello</h1>\n',
      'src/app.js': 'console.log("hi")\n',
      'notes.log': 'ignored by .dockerignore\n',
      '.dockerignore': '*.log\n',
    });
  });

  it('builds, pushes, and the pushed image holds exactly the expected files and config', async () => {
    const r = await runBuilder(buildArgs());
    expect(r.stderr).not.toMatch(/"status":"error"/);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`pushed ${tag().replace(/[.]/g, '\\.')}@sha256:[a-f0-9]{64}`));

    const inspect = JSON.parse(run('skopeo', ['inspect', '--tls-verify=false', `docker://${tag()}`])) as { Digest: string; Layers: string[] };
    firstPush = pushedDigest(r.stdout);
    expect(inspect.Digest).toBe(firstPush);

    const layout = join(fx.work, 'seed-layout');
    run('skopeo', ['copy', '--src-tls-verify=false', `docker://${tag()}`, `oci:${layout}:app`]);
    const bundle = join(fx.work, 'seed-bundle');
    run('umoci', ['unpack', '--image', `${layout}:app`, bundle]);
    const rootfs = join(bundle, 'rootfs');
    expect((await readdir(join(rootfs, 'usr/share/www'))).sort()).toEqual(['VERSION', 'app.js', 'index.html']);
    expect(await readFile(join(rootfs, 'usr/share/www/index.html'), 'utf8')).toBe('<h1>hello</h1>\n');
    expect(await readFile(join(rootfs, 'usr/share/www/VERSION'), 'utf8')).toBe('built 2 files\n');
    // Only the final stage ships: nothing of the builder stage's /app.
    expect(existsSync(join(rootfs, 'app'))).toBe(false);
    expect(existsSync(join(rootfs, 'bin/busybox'))).toBe(true);

    const config = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as { process: { args: string[]; env: string[]; cwd: string } };
    expect(config.process.args).toEqual(['cat', '/usr/share/www/index.html']);
    expect(config.process.cwd).toBe('/usr/share/www');
    expect(config.process.env).toEqual(expect.arrayContaining(['GREETING=hello', 'MODE=production']));
    expect(config.process.env.some((e) => e.startsWith('PATH='))).toBe(true);
  });

  it('rebuilding with nothing changed reports every step CACHED, starts no container and pushes the same image', async () => {
    const r = await runBuilder(buildArgs());
    expect(r.code, r.stderr).toBe(0);
    // As with BuildKit, the image's times are those of its layers, so a build from the cache is
    // the same image (the same ID and manifest), not a copy with a new date.
    expect(pushedDigest(r.stdout)).toBe(firstPush);
    const { ran, cached } = stepsByStatus(r.stderr);
    expect(ran.filter((n) => !/FROM /.test(n))).toEqual([]);
    expect(cached.filter((n) => /RUN /.test(n))).toHaveLength(2);
    expect(cached.some((n) => /COPY --from=builder/.test(n))).toBe(true);
    // An unrelated, ignored file does not invalidate anything either.
    await writeFile(join(ctx, 'notes.log'), 'changed, but ignored\n');
    const again = stepsByStatus((await runBuilder(buildArgs())).stderr);
    expect(again.ran.filter((n) => !/FROM /.test(n))).toEqual([]);
  });

  it('changing one source file re-runs only the steps after the COPY that takes it', async () => {
    await writeFile(join(ctx, 'src/index.html'), '<h1>changed</h1>\n');
    const r = await runBuilder(buildArgs());
    expect(r.code, r.stderr).toBe(0);
    const { ran, cached } = stepsByStatus(r.stderr);
    const ranSteps = ran.filter((n) => !/FROM /.test(n));
    expect(ranSteps).toEqual(
      expect.arrayContaining([expect.stringMatching(/COPY \. \./), expect.stringMatching(/RUN mkdir -p build/), expect.stringMatching(/COPY --from=builder/)]),
    );
    expect(ranSteps.some((n) => /COPY package\.json|RUN mkdir -p node_modules/.test(n))).toBe(false);
    expect(cached).toEqual(expect.arrayContaining([expect.stringMatching(/COPY package\.json/), expect.stringMatching(/RUN mkdir -p node_modules/)]));
  });

  it('touching a file without changing it keeps the cache', async () => {
    const content = await readFile(join(ctx, 'src/app.js'));
    await writeFile(join(ctx, 'src/app.js'), content);
    const { ran } = stepsByStatus((await runBuilder(buildArgs())).stderr);
    expect(ran.filter((n) => !/FROM /.test(n))).toEqual([]);
  });

  it('exports an OCI archive that skopeo reads', async () => {
    const dest = join(fx.work, 'seed.tar');
    const r = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'quiet', '-f', join(ctx, 'Dockerfile.dev'), '-t', 'app:oci', '--output', `type=oci,dest=${dest}`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    const inspect = JSON.parse(run('skopeo', ['inspect', `oci-archive:${dest}:docker.io/library/app:oci`])) as { Digest: string; Env: string[] };
    expect(r.stdout).toContain(`exported ${dest} ${inspect.Digest}\n`);
    expect(inspect.Env).toContain('GREETING=hello');
    // Layers leave the machine gzipped, though the local store keeps them as plain tars.
    const raw = JSON.parse(run('skopeo', ['inspect', '--raw', `oci-archive:${dest}:docker.io/library/app:oci`])) as { layers: Array<{ mediaType: string }> };
    expect(new Set(raw.layers.map((l) => l.mediaType))).toEqual(new Set(['application/vnd.oci.image.layer.v1.tar+gzip']));
  });
});

describe('builder build: failures', () => {
  let root: string;
  beforeAll(async () => {
    root = join(fx.work, 'fail-root');
  });

  async function context(name: string, dockerfile: string): Promise<string> {
    const dir = join(fx.work, name);
    await writeTree(dir, { Dockerfile: dockerfile, 'a.txt': 'a\n' });
    return dir;
  }

  it('COPY --chown resolves names from the image, and a numeric user alone is also the group', async () => {
    const dir = await context(
      'chown',
      `FROM ${fx.base}\nCOPY --chown=app a.txt /by-name\nCOPY --chown=1234 a.txt /by-id\nCOPY --chown=app:nogroup a.txt /both\n` +
        `RUN stat -c '%n %u:%g' /by-name /by-id /both\n`,
    );
    const r = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'plain', dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('/by-name 1000:1000');
    expect(r.stderr).toContain('/by-id 1234:1234');
    expect(r.stderr).toContain('/both 1000:65534');

    const missing = await context('chown-missing', `FROM ${fx.base}\nCOPY --chown=nosuchuser a.txt /x\n`);
    const bad = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'plain', missing]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/Dockerfile:2/);
    expect(bad.stderr).toMatch(/unable to find user nosuchuser/);
  });

  it('a failing RUN exits non-zero naming the Dockerfile, line and command, and leaves nothing behind', async () => {
    const dir = await context('failing-run', `FROM ${fx.base}\nCOPY a.txt /a.txt\nRUN echo about to fail && exit 3\n`);
    const r = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'plain', dir]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Dockerfile:3/);
    expect(r.stderr).toMatch(/echo about to fail && exit 3/);
    expect(r.stderr).toMatch(/exit code: 3/);
    expect(r.stderr).toMatch(/about to fail/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(leftoverContainers(root)).toEqual([]);
    expect(mountsUnder(root)).toEqual([]);
  });

  it('Ctrl-C during a RUN stops the build and leaves no container and no mount', async () => {
    // The marker is printed by the running command, not by the step's name; the sleep outlasts
    // the test's timeout, so a build that does not stop the container fails it.
    const dir = await context('interrupted', `FROM ${fx.base}\nRUN echo started-$((40+2)) && sleep 600\n`);
    const child = startBuilder(['build', '--network', 'none', '--root', root, '--progress', 'plain', dir]);
    await waitForStderr(child, 'started-42');
    child.kill('SIGINT');
    const r = await finished(child);
    expect(r.code).toBe(130);
    expect(leftoverContainers(root)).toEqual([]);
    expect(mountsUnder(root)).toEqual([]);
  });

  it('an unknown instruction fails before anything runs, naming the line', async () => {
    const dir = await context('unknown-instruction', `FROM ${fx.base}\nRUN echo hi\nCOPPY a.txt /a\n`);
    const r = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'json', dir]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Dockerfile:3/);
    expect(r.stderr).toMatch(/COPPY/i);
    expect(events(r.stderr).filter((e) => e.type === 'step')).toEqual([]);
  });

  it('COPY --from an undefined stage fails before anything runs, naming the line', async () => {
    const dir = await context('undefined-stage', `FROM ${fx.base} AS build\nRUN echo hi\nFROM ${fx.base}\nCOPY --from=buidl /a /a\n`);
    const r = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'json', dir]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Dockerfile:4/);
    expect(r.stderr).toMatch(/buidl/);
    expect(events(r.stderr).filter((e) => e.type === 'step')).toEqual([]);
  });
});

describe('docker runs what builder pushed', () => {
  const dockerWorks = spawnSync('docker', ['info'], { encoding: 'utf8' }).status === 0;
  const title = `docker pull + docker run prints the expected output${dockerWorks ? '' : ' (skipped: no docker daemon answers `docker info` here)'}`;
  it.skipIf(!dockerWorks)(title, () => {
    const ref = `${fx.registry.host}/user/app:1.2`;
    run('docker', ['pull', ref]);
    const out = run('docker', ['run', '--rm', '--network=none', ref]);
    expect(out).toContain('<h1>');
  });
});
