import { describe, expect, it } from 'vitest';
import type { CopyAction, MkdirAction } from '../../src/definition/index.js';
import type { ImageResolver } from '../../src/frontend/index.js';
import { build, digestAt, envOf, execs, fakeResolver, fileOps, ops, vertexAt, vertices } from './helpers.js';

describe('stages and bases', () => {
  it('compiles FROM image to a pinned image vertex resolved for the target platform', async () => {
    const resolve = fakeResolver();
    const r = await build('FROM alpine:3.19\nRUN true', { resolveImage: resolve });
    const [image] = ops(r.definition, 'image');
    expect(image).toEqual({ type: 'image', ref: expect.stringMatching(/^docker\.io\/library\/alpine:3\.19@sha256:[0-9a-f]{64}$/), platform: { os: 'linux', architecture: 'amd64' } });
    expect(resolve.calls).toEqual(['alpine:3.19']);
    expect(vertexAt(r, 1).meta.name).toBe(`[1/2] FROM ${image!.ref}`);
    expect(vertexAt(r, 2).meta.name).toBe('[2/2] RUN true');
  });

  it('compiles FROM scratch to a scratch vertex without resolving anything', async () => {
    const resolve = fakeResolver();
    const r = await build('FROM scratch\nCOPY a /a', { resolveImage: resolve });
    expect(resolve.calls).toEqual([]);
    expect(ops(r.definition, 'scratch')).toHaveLength(1);
    expect(r.image.config).toEqual({ WorkingDir: '/', Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] });
  });

  it('uses the global ARGs (and --build-arg) in FROM', async () => {
    const text = 'ARG BASE=alpine\nARG TAG=3.18\nFROM ${BASE}:${TAG}';
    expect((await build(text)).stages[0]!.base).toMatch(/alpine:3\.18@/);
    expect((await build(text, { buildArgs: { TAG: '3.20' } })).stages[0]!.base).toMatch(/alpine:3\.20@/);
  });

  it('parses --platform, with the predefined platform ARGs', async () => {
    const resolve = fakeResolver();
    const text = 'FROM --platform=$BUILDPLATFORM alpine AS tools\nFROM --platform=linux/arm64 alpine\nCOPY --from=tools /x /x';
    const r = await build(text, { resolveImage: resolve, platform: undefined, buildPlatform: { os: 'linux', architecture: 'arm', variant: 'v7' } });
    expect(ops(r.definition, 'image').map((i) => i.platform)).toEqual([
      { os: 'linux', architecture: 'arm', variant: 'v7' },
      { os: 'linux', architecture: 'arm64' },
    ]);
    // As BuildKit: without --platform the image declares its base's platform; with one, that platform.
    expect(r.image.platform).toEqual({ os: 'linux', architecture: 'arm64' });
    const requested = await build(text, { resolveImage: resolve, platform: { os: 'linux', architecture: 'arm', variant: 'v7' } });
    expect(requested.image.platform).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
  });

  it('refuses FROM --platform values that are lists or not platforms, naming the line', async () => {
    await expect(build('FROM alpine AS a\nFROM --platform=linux/amd64,linux/arm64 alpine')).rejects.toThrow(
      /^Dockerfile:2: FROM --platform=linux\/amd64,linux\/arm64: invalid platform "linux\/amd64,linux\/arm64": a list of platforms needs a multi-platform build/,
    );
    await expect(build('ARG P=linux/&arm\nFROM --platform=$P alpine')).rejects.toThrow(/^Dockerfile:2: FROM --platform=\$P: invalid platform "linux\/&arm": "&arm" is not a valid component/);
    await expect(build('FROM --platform=notanarch alpine')).rejects.toThrow(/unknown operating system or architecture/);
  });

  it('warns with InvalidBaseImagePlatform when a base is for another os or architecture, not for another variant', async () => {
    const served = (architecture: string, variant?: string): ImageResolver => async (ref, platform) => {
      const { config } = await fakeResolver()(ref, platform);
      return { ref: `docker.io/library/alpine:3@sha256:${'a'.repeat(64)}`, config: { ...config, architecture, ...(variant ? { variant } : {}) } };
    };
    const arm = await build('FROM alpine:3\nRUN true', { resolveImage: served('arm64') });
    expect(arm.warnings).toEqual([
      { file: 'Dockerfile', line: 1, rule: 'InvalidBaseImagePlatform', message: 'Base image alpine:3 was pulled with platform "linux/arm64", expected "linux/amd64" for current build' },
    ]);
    expect((await build('FROM alpine:3', { resolveImage: served('amd64', 'v2') })).warnings).toEqual([]);
    expect((await build('FROM alpine:3', { resolveImage: served('x86_64', 'v1') })).warnings).toEqual([]);
    expect((await build('# check=skip=InvalidBaseImagePlatform\nFROM alpine:3', { resolveImage: served('arm64') })).warnings).toEqual([]);
  });

  it('builds on an earlier stage by name, inheriting its state', async () => {
    const r = await build('FROM alpine AS base\nENV A=1\nWORKDIR /app\nFROM base\nRUN pwd');
    const [run] = execs(r.definition);
    expect(run!.cwd).toBe('/app');
    expect(envOf(run!).A).toBe('1');
    expect(vertexAt(r, 5).inputs).toEqual([digestAt(r, 3)]);
    expect(r.stages.map((s) => [s.index, s.base])).toEqual([
      [0, expect.stringContaining('alpine')],
      [1, 'base'],
    ]);
  });

  it('only compiles the stages the target needs (the last stage by default)', async () => {
    const text = [
      'FROM alpine AS unused', // 1
      'RUN echo unused', // 2
      'FROM node AS deps', // 3
      'RUN npm ci', // 4
      'FROM alpine AS final', // 5
      'COPY --from=deps /srv/node_modules /app/node_modules', // 6
      'FROM alpine AS other', // 7
      'RUN echo other', // 8
    ].join('\n');
    const resolve = fakeResolver();
    const r = await build(text, { target: 'final', resolveImage: resolve });
    const runs = execs(r.definition).map((e) => e.args.join(' '));
    expect(runs).toEqual(['/bin/sh -c npm ci']);
    expect(r.stages.map((s) => s.name)).toEqual(['deps', 'final']);
    expect(resolve.calls.sort()).toEqual(['alpine', 'node']);
    expect(r.root).toBe(digestAt(r, 6));

    const last = await build(text);
    expect(execs(last.definition).map((e) => e.args.join(' '))).toEqual(['/bin/sh -c echo other']);
  });

  it('matches stage names case-insensitively and accepts stage indexes in COPY --from', async () => {
    const r = await build('FROM alpine AS Build\nRUN make\nFROM scratch\nCOPY --from=BUILD /a /a\nCOPY --from=0 /b /b');
    const copies = vertices(r.definition).filter((v) => v.op.type === 'file');
    expect(copies.map((v) => v.inputs[1])).toEqual([digestAt(r, 2), digestAt(r, 2)]);
    expect(r.stages[0]!.name).toBe('build');
  });
});

describe('ARG scoping', () => {
  it('keeps global ARGs out of stages unless re-declared', async () => {
    const r = await build('ARG V=1\nFROM alpine\nRUN echo a\nARG V\nRUN echo b');
    const [a, b] = execs(r.definition);
    expect(envOf(a!).V).toBeUndefined();
    expect(envOf(b!).V).toBe('1');
  });

  it('lets --build-arg override defaults, global and local', async () => {
    const text = 'ARG G=global\nFROM alpine\nARG G\nARG L=local\nRUN echo';
    expect(envOf(execs((await build(text)).definition)[0]!)).toMatchObject({ G: 'global', L: 'local' });
    const overridden = await build(text, { buildArgs: { G: 'x', L: 'y' } });
    expect(envOf(execs(overridden.definition)[0]!)).toMatchObject({ G: 'x', L: 'y' });
  });

  it('declares an ARG without a value as unset, unless a build arg gives one', async () => {
    const text = 'FROM alpine\nARG NOVALUE\nRUN echo $NOVALUE';
    const r = await build(text);
    expect(envOf(execs(r.definition)[0]!)).not.toHaveProperty('NOVALUE');
    expect(r.image.history.at(-1)!.created_by).toBe('RUN |1 NOVALUE= /bin/sh -c echo $NOVALUE # buildkit');
    expect(envOf(execs((await build(text, { buildArgs: { NOVALUE: 'v' } })).definition)[0]!).NOVALUE).toBe('v');
  });

  it('scopes ARGs to their stage (and to stages built on it)', async () => {
    const r = await build('FROM alpine AS a\nARG X=1\nRUN echo a\nFROM alpine AS b\nRUN echo b\nFROM a AS c\nRUN echo c', { target: 'c' });
    expect(envOf(execs(r.definition).find((e) => e.args[2] === 'echo c')!).X).toBe('1');
    const b = await build('FROM alpine AS a\nARG X=1\nRUN echo a\nFROM alpine AS b\nRUN echo b', { target: 'b' });
    expect(envOf(execs(b.definition)[0]!).X).toBeUndefined();
  });

  it('lets a later ENV of the same name win over an ARG', async () => {
    const r = await build('FROM alpine\nARG V=arg\nENV V=env\nRUN echo $V', { buildArgs: { V: 'build-arg' } });
    expect(envOf(execs(r.definition)[0]!).V).toBe('env');
    expect(r.image.config.Env).toContain('V=env');
  });

  it('expands ARG defaults and ENV values with the variables in scope', async () => {
    const r = await build('FROM alpine\nARG A=1\nARG B=${A}2\nENV C=${B}3 D=$C\nENV E=$C\nRUN true');
    expect(envOf(execs(r.definition)[0]!)).toMatchObject({ A: '1', B: '12', C: '123', D: '', E: '123' });
  });

  it('does not put ARGs in the image config, only in RUN environments and history', async () => {
    const r = await build('FROM alpine\nARG TOKEN=x\nRUN echo');
    expect(r.image.config.Env!.some((e) => e.startsWith('TOKEN='))).toBe(false);
    expect(r.image.history.slice(-2).map((h) => h.created_by)).toEqual(['ARG TOKEN=x', 'RUN |1 TOKEN=x /bin/sh -c echo # buildkit']);
  });

  it('makes predefined platform ARGs available once declared', async () => {
    const r = await build('FROM alpine\nARG TARGETARCH\nARG TARGETPLATFORM\nRUN echo $TARGETARCH', { platform: { os: 'linux', architecture: 'arm64' } });
    expect(envOf(execs(r.definition)[0]!)).toMatchObject({ TARGETARCH: 'arm64', TARGETPLATFORM: 'linux/arm64' });
  });

  it('warns about build args that no compiled stage declares', async () => {
    const r = await build('ARG USED_IN_FROM=alpine\nFROM $USED_IN_FROM\nARG USED\nRUN true', {
      buildArgs: { USED: '1', USED_IN_FROM: 'alpine', UNUSED: '2', TARGETARCH: 'amd64' },
    });
    expect(r.warnings.filter((w) => !w.rule)).toEqual([{ file: 'Dockerfile', line: 0, message: expect.stringContaining('"UNUSED" was not consumed') }]);
  });
});

describe('WORKDIR', () => {
  it('resolves relative paths against the previous WORKDIR and creates each directory', async () => {
    const r = await build('FROM alpine\nWORKDIR /a\nWORKDIR b\nWORKDIR ../c/./d/\nENV DIR=e\nWORKDIR $DIR\nRUN pwd');
    const mkdirs = fileOps(r.definition).map((op) => op.actions[0] as MkdirAction);
    expect(mkdirs.map((m) => [m.path, m.mode])).toEqual([
      ['/a', 0o755],
      ['/a/b', 0o755],
      ['/a/c/d', 0o755],
      ['/a/c/d/e', 0o755],
    ]);
    expect(execs(r.definition)[0]!.cwd).toBe('/a/c/d/e');
    expect(r.image.config.WorkingDir).toBe('/a/c/d/e');
    expect(r.image.history.filter((h) => h.created_by?.startsWith('WORKDIR')).map((h) => h.created_by)).toEqual([
      'WORKDIR /a',
      'WORKDIR /a/b',
      'WORKDIR /a/c/d',
      'WORKDIR /a/c/d/e',
    ]);
  });

  it('starts from the base image WORKDIR and chowns to the current USER', async () => {
    const r = await build('FROM node\nWORKDIR app\nRUN ls');
    expect(fileOps(r.definition)[0]!.actions[0]).toEqual({ action: 'mkdir', path: '/srv/app', mode: 0o755, chown: { user: 'node' } });
    expect(execs(r.definition)[0]).toMatchObject({ cwd: '/srv/app', user: 'node' });
  });

  it('uses / for RUN when no WORKDIR is set, and WORKDIR / needs no vertex', async () => {
    const r = await build('FROM alpine\nRUN a\nWORKDIR /\nRUN b');
    expect(fileOps(r.definition)).toEqual([]);
    expect(execs(r.definition).map((e) => e.cwd)).toEqual(['/', '/']);
  });
});

describe('RUN', () => {
  it('wraps shell form in the shell and passes exec form as is', async () => {
    const r = await build('FROM alpine\nRUN echo "$HOME" && ls\nRUN ["echo", "$HOME"]\nSHELL ["/bin/bash", "-o", "pipefail", "-c"]\nRUN a | b');
    expect(execs(r.definition).map((e) => e.args)).toEqual([
      ['/bin/sh', '-c', 'echo "$HOME" && ls'],
      ['echo', '$HOME'],
      ['/bin/bash', '-o', 'pipefail', '-c', 'a | b'],
    ]);
  });

  it('runs with the image env, the user and the network mode', async () => {
    const r = await build('FROM node\nUSER app:staff\nRUN --network=none npm ci');
    expect(execs(r.definition)[0]).toEqual({
      type: 'exec',
      args: ['/bin/sh', '-c', 'npm ci'],
      env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'NODE_VERSION=20.11.0'],
      cwd: '/srv',
      user: 'app:staff',
      network: 'none',
    });
  });

  it('adds PATH when the base image has none', async () => {
    const r = await build('FROM nopath\nRUN true');
    expect(envOf(execs(r.definition)[0]!).PATH).toBe('/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  });

  it('names progress vertices with the instruction as written: a build arg may hold a secret', async () => {
    const text = 'FROM alpine AS builder\nARG PASSWORD\nENV APP=web\nRUN echo "$APP" $PASSWORD $UNKNOWN\nrun  true\nFROM builder';
    const r = await build(text, { buildArgs: { PASSWORD: 's3cret-pw' } });
    expect(vertexAt(r, 4).meta).toEqual({ name: '[builder 2/3] RUN echo "$APP" $PASSWORD $UNKNOWN', file: 'Dockerfile', startLine: 4, endLine: 4, position: 'builder#2' });
    expect(vertexAt(r, 5).meta.name).toBe('[builder 3/3] RUN  true');
    // The command still runs with the value, and history keeps it as BuildKit does.
    expect(envOf(execs(r.definition)[0]!).PASSWORD).toBe('s3cret-pw');
    expect(r.image.history.at(-2)!.created_by).toBe('RUN |1 PASSWORD=s3cret-pw /bin/sh -c echo "$APP" $PASSWORD $UNKNOWN # buildkit');
  });

  it('the display name is not part of the vertex digest', async () => {
    const a = await build('FROM alpine\nRUN echo $V', { buildArgs: {} });
    const b = await build('FROM alpine\nrun   echo $V');
    // Same op, different text: one digest, whichever name was seen first.
    expect(execs(a.definition)[0]!.args).toEqual(execs(b.definition)[0]!.args);
    expect(a.root).toBe(b.root);
    expect(vertexAt(a, 2).meta.name).not.toBe(vertexAt(b, 2).meta.name);
  });

  it('clips a very long instruction in its step name', async () => {
    const chunks = Array.from({ length: 4 }, () => 'x'.repeat(50_000));
    const r = await build(`FROM alpine\nRUN echo ${chunks.join('\\\n')}`);
    const name = vertexAt(r, 2).meta.name;
    expect(name.length).toBeLessThan(1100);
    expect(name).toMatch(/^\[2\/2\] RUN echo x+ \[\.\.\. \d+ more characters\]$/);
    expect(execs(r.definition)[0]!.args.at(-1)).toBe(`echo ${chunks.join('')}`);
  });
});

describe('COPY', () => {
  it('copies from a single hidden context vertex into WORKDIR-relative destinations', async () => {
    const r = await build('FROM alpine\nWORKDIR /app\nCOPY package.json package-lock.json ./\nCOPY src src\nCOPY . .', { dockerignore: ['node_modules', '!keep'] });
    const locals = vertices(r.definition).filter((v) => v.op.type === 'local');
    expect(locals).toHaveLength(1);
    expect(locals[0]).toEqual({ op: { type: 'local', name: 'context', exclude: ['node_modules', '!keep'] }, inputs: [], meta: { name: '[internal] load build context', hidden: true } });
    const ctx = [...r.definition.vertices].find(([, v]) => v.op.type === 'local')![0];
    const copies = vertices(r.definition).filter((v) => v.op.type === 'file' && (v.op.actions[0] as CopyAction).action === 'copy');
    expect(copies.map((v) => v.inputs[1])).toEqual([ctx, ctx, ctx]);
    expect(copies.map((v) => (v.op.type === 'file' ? v.op.actions : []))).toEqual([
      [{ action: 'copy', sourceInput: 1, src: ['package.json', 'package-lock.json'], dest: '/app/' }],
      [{ action: 'copy', sourceInput: 1, src: ['src'], dest: '/app/src' }],
      [{ action: 'copy', sourceInput: 1, src: ['.'], dest: '/app/' }],
    ]);
    expect(r.image.history.slice(-3).map((h) => h.created_by)).toEqual([
      'COPY package.json package-lock.json ./ # buildkit',
      'COPY src src # buildkit',
      'COPY . . # buildkit',
    ]);
  });

  it('expands variables and supports --chown and --chmod', async () => {
    const r = await build('FROM alpine\nARG U=app\nENV D=/opt/\nCOPY --chown=$U:staff --chmod=640 ["conf/a b.txt", "$D"]');
    expect(fileOps(r.definition)[0]!.actions).toEqual([
      { action: 'copy', sourceInput: 1, src: ['conf/a b.txt'], dest: '/opt/', chown: { user: 'app', group: 'staff' }, chmod: 0o640 },
    ]);
    expect(r.image.history.at(-1)!.created_by).toBe('COPY --chown=app:staff --chmod=640 conf/a b.txt /opt/ # buildkit');
  });

  it('rejects several sources into a destination that is not a directory', async () => {
    await expect(build('FROM alpine\nCOPY a b /dest')).rejects.toThrow(/^Dockerfile:2: COPY with more than one source needs a directory destination ending in "\/"/);
  });

  it('rejects an invalid --chmod', async () => {
    await expect(build('FROM alpine\nCOPY --chmod=999 a /a')).rejects.toThrow(/Dockerfile:2: invalid chmod parameter/);
  });
});

describe('CMD and ENTRYPOINT', () => {
  it('inherits CMD and ENTRYPOINT from the base image', async () => {
    const r = await build('FROM node\nRUN true');
    expect(r.image.config).toMatchObject({ Entrypoint: ['docker-entrypoint.sh'], Cmd: ['node'] });
  });

  it('resets an inherited CMD when ENTRYPOINT is set', async () => {
    const r = await build('FROM alpine\nENTRYPOINT ["/app"]');
    expect(r.image.config.Entrypoint).toEqual(['/app']);
    expect(r.image.config.Cmd).toBeUndefined();
  });

  it('keeps a CMD set in the same stage, before or after ENTRYPOINT', async () => {
    expect((await build('FROM alpine\nCMD ["--help"]\nENTRYPOINT ["/app"]')).image.config).toMatchObject({ Entrypoint: ['/app'], Cmd: ['--help'] });
    expect((await build('FROM alpine\nENTRYPOINT ["/app"]\nCMD ["--help"]')).image.config).toMatchObject({ Entrypoint: ['/app'], Cmd: ['--help'] });
  });

  it('resets CMD in a stage built FROM another stage that set it', async () => {
    const r = await build('FROM alpine AS a\nCMD ["x"]\nFROM a\nENTRYPOINT ["y"]');
    expect(r.image.config.Cmd).toBeUndefined();
  });

  it('wraps shell forms in the SHELL and records BuildKit history', async () => {
    const r = await build('FROM alpine\nCMD node server.js\nENTRYPOINT exec /run.sh\nENTRYPOINT []');
    expect(r.image.config.Cmd).toEqual(['/bin/sh', '-c', 'node server.js']);
    expect(r.image.config.Entrypoint).toBeUndefined();
    expect(r.image.history.slice(-3)).toEqual([
      { created_by: 'CMD ["/bin/sh" "-c" "node server.js"]', comment: 'buildkit.dockerfile.v0', empty_layer: true },
      { created_by: 'ENTRYPOINT ["/bin/sh" "-c" "exec /run.sh"]', comment: 'buildkit.dockerfile.v0', empty_layer: true },
      { created_by: 'ENTRYPOINT []', comment: 'buildkit.dockerfile.v0', empty_layer: true },
    ]);
  });
});

describe('config-only instructions', () => {
  it('sets ENV (both forms), LABEL, EXPOSE, USER, VOLUME, STOPSIGNAL, HEALTHCHECK, SHELL, ONBUILD', async () => {
    const r = await build(
      [
        'FROM alpine',
        'ENV A=1 B="two words"',
        'ENV LEGACY  value with  spaces',
        'LABEL org.opencontainers.image.title="My App" version=$A',
        'EXPOSE 80 443/tcp 53/UDP 8000-8001',
        'USER 1000:1000',
        'VOLUME ["/data", "/logs"]',
        'STOPSIGNAL SIGQUIT',
        'HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD curl -f http://localhost/ || exit 1',
        'SHELL ["/bin/bash", "-c"]',
        'ONBUILD RUN echo child',
        'MAINTAINER someone@example.com',
      ].join('\n'),
    );
    expect(r.image.config).toMatchObject({
      Env: expect.arrayContaining(['A=1', 'B=two words', 'LEGACY=value with  spaces']),
      Labels: { 'org.opencontainers.image.title': 'My App', version: '1' },
      ExposedPorts: { '80/tcp': {}, '443/tcp': {}, '53/udp': {}, '8000/tcp': {}, '8001/tcp': {} },
      User: '1000:1000',
      Volumes: { '/data': {}, '/logs': {} },
      StopSignal: 'SIGQUIT',
      Healthcheck: { Test: ['CMD-SHELL', 'curl -f http://localhost/ || exit 1'], Interval: 30e9, Timeout: 5e9, Retries: 3 },
      Shell: ['/bin/bash', '-c'],
      OnBuild: ['RUN echo child'],
    });
    // MAINTAINER is the image's author, as Docker records it, and no label.
    expect(r.image.author).toBe('someone@example.com');
    expect(r.image.config.Labels).not.toHaveProperty('maintainer');
    expect(vertices(r.definition)).toHaveLength(1); // only the base image: nothing here changes files
    expect(r.image.history.slice(1).map((h) => [h.created_by, h.empty_layer])).toEqual([
      ['ENV A=1 B=two words', true],
      ['ENV LEGACY=value with  spaces', true],
      ['LABEL org.opencontainers.image.title=My App version=1', true],
      ['EXPOSE [80/tcp 443/tcp 53/udp 8000/tcp 8001/tcp]', true],
      ['USER 1000:1000', true],
      ['VOLUME [/data /logs]', true],
      ['STOPSIGNAL SIGQUIT', true],
      ['HEALTHCHECK {Test:[CMD-SHELL curl -f http://localhost/ || exit 1] Interval:30s Timeout:5s StartPeriod:0s StartInterval:0s Retries:3}', true],
      ['SHELL [/bin/bash -c]', true],
      ['MAINTAINER someone@example.com', true],
    ]);
  });

  it('sets --label labels over the Dockerfile\'s on the target stage only, without a history entry', async () => {
    const text = 'FROM alpine AS base\nLABEL kept=1 both=dockerfile\nFROM base\nLABEL final=1';
    const labels = { both: 'cli', added: '' };
    const r = await build(text, { labels });
    expect(r.image.config.Labels).toEqual({ kept: '1', both: 'cli', final: '1', added: '' });
    expect(r.image.history.slice(1).map((h) => h.created_by)).toEqual(['LABEL kept=1 both=dockerfile', 'LABEL final=1']);
    expect((await build(text, { labels, target: 'base' })).image.config.Labels).toEqual({ kept: '1', both: 'cli', added: '' });
  });

  it('runs ONBUILD triggers of the base image first', async () => {
    const resolve = fakeResolver({ onbuilder: { Env: ['PATH=/bin'], OnBuild: ['COPY . /src', 'RUN make'] } });
    const r = await build('FROM onbuilder\nRUN echo mine', { resolveImage: resolve });
    expect(execs(r.definition).map((e) => e.args.at(-1))).toEqual(['make', 'echo mine']);
    expect(r.image.config.OnBuild).toBeUndefined();
    expect(vertices(r.definition).map((v) => v.meta.name).filter((n) => n.includes('ONBUILD'))).toEqual([
      '[2/4] ONBUILD COPY . /src',
      '[3/4] ONBUILD RUN make',
    ]);
  });

  it('starts the image history with the base image history and pins created only with SOURCE_DATE_EPOCH', async () => {
    const plain = await build('FROM alpine\nRUN true');
    expect(plain.image.history[0]!.created_by).toContain('ADD file:alpine');
    expect(plain.image.history[1]).toEqual({ created_by: 'RUN /bin/sh -c true # buildkit', comment: 'buildkit.dockerfile.v0', vertex: digestAt(plain, 2) });
    const pinned = await build('FROM alpine\nRUN true', { sourceDateEpoch: 1700000000 });
    expect(pinned.image.history[1]!.created).toBe('2023-11-14T22:13:20Z');
  });
});

describe('content addressing', () => {
  const text = ['ARG VERSION=1', 'FROM alpine', 'ARG VERSION', 'ARG OTHER', 'COPY app /app', 'RUN ./build.sh', 'ENV X=1'].join('\n');

  it('gives identical digests for identical Dockerfiles', async () => {
    const a = await build(text);
    const b = await build(text);
    expect(b.root).toBe(a.root);
    expect([...b.definition.vertices.keys()]).toEqual([...a.definition.vertices.keys()]);
  });

  it('changes the RUN digest when the command changes, and not its parents', async () => {
    const a = await build(text);
    const b = await build(text.replace('./build.sh', './build.sh --release'));
    expect(digestAt(b, 6)).not.toBe(digestAt(a, 6));
    expect(digestAt(b, 5)).toBe(digestAt(a, 5));
  });

  it('changes the RUN digest when a build arg in scope changes', async () => {
    const a = await build(text, { buildArgs: { VERSION: '1' } });
    const b = await build(text, { buildArgs: { VERSION: '2' } });
    expect(digestAt(b, 6)).not.toBe(digestAt(a, 6));
    const c = await build(text, { buildArgs: { OTHER: 'x' } });
    expect(digestAt(c, 6)).not.toBe(digestAt(a, 6));
  });

  it('keeps the RUN digest when an arg that is not in scope changes', async () => {
    const a = await build(text);
    const b = await build(text, { buildArgs: { UNDECLARED: 'x' } });
    expect(digestAt(b, 6)).toBe(digestAt(a, 6));
    const late = 'FROM alpine\nRUN make\nARG LATE';
    expect(digestAt(await build(late, { buildArgs: { LATE: '1' } }), 2)).toBe(digestAt(await build(late, { buildArgs: { LATE: '2' } }), 2));
  });

  it('does not let metadata-only instructions or vertex names change digests', async () => {
    const a = await build('FROM alpine\nLABEL a=1\nRUN true');
    const b = await build('FROM alpine AS renamed\nLABEL a=2\nEXPOSE 80\n\n\nrun   true'.replace('run   true', 'RUN true'));
    expect(b.root).toBe(a.root);
  });
});

describe('escape directive and warnings', () => {
  it('uses the escape directive for continuations and expansion', async () => {
    const r = await build('# escape=`\nFROM alpine\nENV DIR=C:\\data\\app `\n    NAME=x`"y\nWORKDIR $DIR');
    expect(r.image.config.Env).toEqual(expect.arrayContaining(['DIR=C:\\data\\app', 'NAME=x"y']));
  });

  it('passes parser warnings through and warns about reserved stage names, as BuildKit\'s lints', async () => {
    const r = await build('FROM alpine AS scratch\nRUN a \\\n\n  b');
    expect(r.warnings.filter((w) => w.rule !== 'FromWithoutTag').map((w) => [w.rule, w.line, w.message])).toEqual([
      ['NoEmptyContinuation', 2, expect.stringContaining('empty continuation line')],
      ['ReservedStageName', 1, expect.stringContaining('"scratch" is reserved')],
    ]);
    const skipped = await build('# check=skip=NoEmptyContinuation,ReservedStageName\nFROM alpine:3.19 AS context\nRUN a \\\n\n  b');
    expect(skipped.warnings).toEqual([]);
  });

  it('runs the ONBUILD instructions of a base stage in the stage built on it', async () => {
    const r = await build('FROM alpine AS base\nONBUILD RUN echo triggered\nRUN echo base\nFROM base\nRUN echo child');
    expect(execs(r.definition).map((e) => e.args.at(-1))).toEqual(['echo base', 'echo triggered', 'echo child']);
    expect(r.image.config.OnBuild).toBeUndefined();
  });

  it('takes SOURCE_DATE_EPOCH from the build args too', async () => {
    const r = await build('FROM alpine\nENV A=1', { buildArgs: { SOURCE_DATE_EPOCH: '0' } });
    expect(r.image.history.at(-1)!.created).toBe('1970-01-01T00:00:00Z');
    expect(r.warnings.filter((w) => !w.rule)).toEqual([]);
  });
});
