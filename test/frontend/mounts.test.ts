// RUN --mount: parsed and validated as BuildKit does, and compiled into the exec op's mounts with
// BuildKit's defaults; what a mount reads from is a vertex input and a dependency of the stage.
import { describe, expect, it } from 'vitest';
import type { Digest, ExecOp } from '../../src/definition/index.js';
import { parseMount } from '../../src/frontend/mounts.js';
import { build, digestAt, envOf, fakeResolver, rejection, vertexAt } from './helpers.js';

/** Mount specs BuildKit refuses (or, for a cache's source without from, fails on when the step runs). */
const refusals: Array<[string, RegExp]> = [
  ['type=volume,target=/x', /unsupported mount type "volume"/],
  ['type=cahce,target=/x', /unsupported mount type "cahce" \(did you mean cache\?\)/],
  ['type=cache,target=/c,sharing=sometimes', /unsupported sharing value "sometimes"/],
  ['type=bind,target=/c,sharing=locked', /invalid cache sharing set for bind mount/],
  ['type=cache,target=/c,mode=rwx', /invalid value for mode: "rwx"/],
  ['type=cache,target=/c,uid=-1', /invalid value for uid/],
  ['type=tmpfs,target=/t,mode=0700', /mode not allowed for "tmpfs" type mounts/],
  ['type=bind,target=/t,uid=1', /uid not allowed for "bind" type mounts/],
  ['type=bind,target=/c,readonly=maybe', /invalid value for readonly: "maybe"/],
  ['type=cache,target=/c,required', /unexpected key "required" for a cache mount/],
  ['type=bind,target=/c,size=1m', /unexpected key "size" for a bind mount/],
  ['type=tmpfs,target=/c,size=lots', /invalid value for size: "lots"/],
  ['type=cache,target=/c,tagret=/d', /unexpected key "tagret" \(did you mean target\?\)/],
  ['type=cache,target', /invalid field "target": it needs a value/],
  ['type=secret', /invalid secret mount: one of id, source or target is required/],
  ['type=secret,env=TOKEN', /invalid secret mount: one of id, source or target is required/],
  ['type=secret,id=a,source=b', /both source and id can't be set/],
  ['type=secret,id=a,from=build', /secret mount should not have a from/],
  ['type=secret,id=a,sharing=locked', /secret mount should not define sharing/],
  ['type=secret,id=a,env=', /invalid environment variable name "" for env/],
  ['type=secret,id=a,env=A=B', /invalid environment variable name "A=B" for env/],
  ['type=ssh,source=/x', /ssh does not support source/],
  ['type=cache,target=/c,source=/go/pkg', /source=\/go\/pkg needs from=<stage or image> on a cache mount/],
  ['type=cache,"target=/c', /unterminated quote/],
];

describe('parseMount', () => {
  it('parses each mount type', () => {
    expect(parseMount('type=cache,target=/root/.cache/pip')).toEqual({ type: 'cache', target: '/root/.cache/pip', readonly: false });
    expect(parseMount('target=/src')).toEqual({ type: 'bind', target: '/src', readonly: true });
    expect(parseMount('type=bind,from=build,source=/out,target=/in,rw')).toEqual({ type: 'bind', from: 'build', source: '/out', target: '/in', readonly: false });
    expect(parseMount('type=tmpfs,dst=/tmp,size=64m')).toEqual({ type: 'tmpfs', target: '/tmp', readonly: false, size: 64 * 1024 * 1024 });
    expect(parseMount('type=secret,id=token,env=TOKEN,required')).toMatchObject({ env: 'TOKEN', required: true });
    expect(parseMount('type=cache,target=/c,id=x,sharing=locked,mode=0755,uid=1000,gid=1000,ro')).toMatchObject({ id: 'x', sharing: 'locked', mode: 0o755, uid: 1000, gid: 1000, readonly: true });
    expect(parseMount('"type=cache","target=/a,b"')).toMatchObject({ target: '/a,b' });
    expect(parseMount('Type=TMPFS,target=/t,size=1.5 GiB')).toMatchObject({ type: 'tmpfs', size: 1.5 * 1024 ** 3 });
  });

  it('accepts what BuildKit accepts and ignores: keys a type has no use for', () => {
    // BuildKit loads the image or stage a tmpfs names (see the --target test) but mounts nothing from it.
    expect(parseMount('type=tmpfs,target=/t,from=x')).toMatchObject({ type: 'tmpfs', from: 'x' });
    expect(parseMount('type=bind,target=/t,id=abc,env=X')).toMatchObject({ type: 'bind', id: 'abc', env: 'X' });
    expect(parseMount('type=secret,source=npmrc')).toMatchObject({ type: 'secret', source: 'npmrc' });
  });

  it('refuses what BuildKit refuses, saying what is wrong', () => {
    for (const [spec, why] of refusals) expect(() => parseMount(spec), spec).toThrow(why);
  });
});

/** The exec op compiled from the RUN on `line`, with its vertex inputs. */
function runAt(result: Awaited<ReturnType<typeof build>>, line: number): { op: ExecOp; inputs: Digest[] } {
  const v = vertexAt(result, line);
  if (v.op.type !== 'exec') throw new Error(`line ${line} is a ${v.op.type} op`);
  return { op: v.op, inputs: v.inputs };
}

describe('RUN --mount compiles into the exec op', () => {
  it('a cache mount: id is the target as written, shared, 0755 root-owned, no input', async () => {
    const r = await build('FROM alpine:3.19\nWORKDIR /app\nRUN --mount=type=cache,target=./node_modules/ npm ci\nRUN --mount=type=cache,target=/root/.npm,sharing=locked,mode=0700,uid=1000,gid=1000,ro npm ci');
    const { op, inputs } = runAt(r, 3);
    expect(op.mounts).toEqual([{ type: 'cache', target: '/app/node_modules', id: 'node_modules', sharing: 'shared', readonly: false, mode: 0o755, uid: 0, gid: 0 }]);
    expect(inputs).toHaveLength(1);
    expect(runAt(r, 4).op.mounts).toEqual([{ type: 'cache', target: '/root/.npm', id: '/root/.npm', sharing: 'locked', readonly: true, mode: 0o700, uid: 1000, gid: 1000 }]);
  });

  it('steps share a cache by the target as written, whatever the WORKDIR (as checked on Docker 20.10)', async () => {
    const r = await build(
      'FROM alpine:3.19\nWORKDIR /a\nRUN --mount=type=cache,target=cache a\nWORKDIR /b\nRUN --mount=type=cache,target=./cache/ b\nRUN --mount=type=cache,target=/a/cache c\nRUN --mount=type=cache,target=/x,id=cache d',
    );
    const ids = [3, 5, 6, 7].map((line) => runAt(r, line).op.mounts?.map((m) => `${m.target ?? ''} ${m.type === 'cache' ? m.id : ''}`)[0]);
    expect(ids).toEqual(['/a/cache cache', '/b/cache cache', '/a/cache /a/cache', '/x cache']);
  });

  it('BUILDKIT_CACHE_MOUNT_NS prefixes every cache id, and is not reported as an unused build arg', async () => {
    const r = await build('FROM alpine:3.19\nRUN --mount=type=cache,target=/c --mount=type=cache,target=/d,id=shared make', { buildArgs: { BUILDKIT_CACHE_MOUNT_NS: 'proj' } });
    expect(runAt(r, 2).op.mounts?.map((m) => (m.type === 'cache' ? m.id : ''))).toEqual(['proj//c', 'proj/shared']);
    expect(r.warnings).toEqual([]);
  });

  it('a bind mount reads the build context by default (the same vertex as COPY, .dockerignore applied), read-only', async () => {
    const r = await build('FROM alpine:3.19\nCOPY go.mod /src/\nWORKDIR /src\nRUN --mount=type=bind,source=go.sum,target=go.sum --mount=target=. go mod download', {
      dockerignore: ['*.log'],
    });
    const { op, inputs } = runAt(r, 4);
    expect(op.mounts).toEqual([
      { type: 'bind', target: '/src', input: 1, source: '/', readonly: true },
      { type: 'bind', target: '/src/go.sum', input: 1, source: '/go.sum', readonly: true },
    ]);
    expect(inputs).toHaveLength(2);
    expect(inputs[1]).toBe(vertexAt(r, 2).inputs[1]);
    expect(r.definition.vertices.get(inputs[1] as Digest)?.op).toEqual({ type: 'local', name: 'context', exclude: ['*.log'] });
  });

  it('from= names a stage (by name or index) or an image; each distinct input is added once, after the root', async () => {
    const resolve = fakeResolver({ tools: { Env: [] } });
    const r = await build(
      [
        'FROM alpine:3.19 AS build', // 1
        'RUN make', // 2
        'FROM alpine:3.19', // 3
        'RUN --mount=from=build,source=/out,target=/in --mount=from=0,target=/all,rw --mount=type=cache,from=tools:1,source=/cache,target=/c --mount=type=bind,from=tools:1,target=/t --mount=target=/ctx install',
      ].join('\n'),
      { resolveImage: resolve },
    );
    const { op, inputs } = runAt(r, 4);
    const build2 = digestAt(r, 2);
    const tools = [...r.definition.vertices].find(([, v]) => v.op.type === 'image' && v.op.ref.includes('/tools:1@'))?.[0];
    expect(inputs.slice(1)).toEqual([build2, tools, expect.stringMatching(/^sha256:/)]);
    expect(op.mounts).toEqual([
      { type: 'bind', target: '/all', input: 1, source: '/', readonly: false },
      { type: 'cache', target: '/c', id: '/c', sharing: 'shared', readonly: false, input: 2, source: '/cache', mode: 0o755, uid: 0, gid: 0 },
      { type: 'bind', target: '/ctx', input: 3, source: '/', readonly: true },
      { type: 'bind', target: '/in', input: 1, source: '/out', readonly: true },
      { type: 'bind', target: '/t', input: 2, source: '/', readonly: true },
    ]);
    expect(resolve.calls.filter((ref) => ref === 'tools:1')).toHaveLength(1);
    // An empty from= is no from: the context.
    const empty = await build('FROM alpine:3.19\nRUN --mount=type=bind,from=,target=/ctx make');
    expect(empty.definition.vertices.get(runAt(empty, 2).inputs[1] as Digest)?.op.type).toBe('local');
  });

  it('a secret: /run/secrets/<id>, 0400 root-owned, optional; env= alone mounts no file; the id can come from source or the target', async () => {
    const r = await build(
      'FROM alpine:3.19\nWORKDIR /w\nRUN --mount=type=secret,id=npmrc --mount=type=secret,id=tok,env=TOKEN,required --mount=type=secret,target=/etc/aws/creds,mode=0440,gid=10 --mount=type=secret,source=pip,env=PIP,target=pip.conf make',
    );
    const { op, inputs } = runAt(r, 3);
    expect(op.mounts).toEqual([
      { type: 'secret', id: 'npmrc', target: '/run/secrets/npmrc', required: false, mode: 0o400, uid: 0, gid: 0 },
      { type: 'secret', id: 'tok', env: 'TOKEN', required: true, mode: 0o400, uid: 0, gid: 0 },
      { type: 'secret', id: 'creds', target: '/etc/aws/creds', required: false, mode: 0o440, uid: 0, gid: 10 },
      { type: 'secret', id: 'pip', target: '/w/pip.conf', env: 'PIP', required: false, mode: 0o400, uid: 0, gid: 0 },
    ]);
    expect(inputs).toHaveLength(1);
    expect(envOf(op)).not.toHaveProperty('TOKEN');
  });

  it('ssh: id default, one socket per mount under /run/buildkit, 0600; the first is SSH_AUTH_SOCK unless the stage sets it', async () => {
    const r = await build('FROM alpine:3.19\nRUN --mount=type=ssh --mount=type=ssh,id=deploy,required,uid=1000 git clone x\nENV SSH_AUTH_SOCK=/mine\nRUN --mount=type=ssh,target=/s git clone y');
    const { op } = runAt(r, 2);
    expect(op.mounts).toEqual([
      { type: 'ssh', id: 'default', target: '/run/buildkit/ssh_agent.0', required: false, mode: 0o600, uid: 0, gid: 0 },
      { type: 'ssh', id: 'deploy', target: '/run/buildkit/ssh_agent.1', required: true, mode: 0o600, uid: 1000, gid: 0 },
    ]);
    expect(envOf(op).SSH_AUTH_SOCK).toBe('/run/buildkit/ssh_agent.0');
    expect(envOf(runAt(r, 4).op).SSH_AUTH_SOCK).toBe('/mine');
    expect(r.image.config.Env).not.toContain('SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0');
  });

  it('a tmpfs with its size; filesystems are mounted in target order (a mount inside another lands on top), then secrets and sockets', async () => {
    const r = await build('FROM alpine:3.19\nRUN --mount=type=ssh --mount=type=tmpfs,target=/app/tmp,size=1g --mount=type=secret,id=s --mount=type=bind,target=/app make');
    expect(runAt(r, 2).op.mounts?.map((m) => `${m.type} ${m.target ?? ''}`)).toEqual(['bind /app', 'tmpfs /app/tmp', 'secret /run/secrets/s', 'ssh /run/buildkit/ssh_agent.0']);
    expect(runAt(r, 2).op.mounts?.[1]).toEqual({ type: 'tmpfs', target: '/app/tmp', size: 1024 ** 3 });
  });

  it('values expand variables one by one (a comma in a value stays in it); from= does not', async () => {
    const r = await build('FROM alpine:3.19\nARG DIR="/a,b"\nRUN --mount=type=cache,target=$DIR,id=${DIR}-x make');
    expect(runAt(r, 3).op.mounts?.[0]).toMatchObject({ target: '/a,b', id: '/a,b-x' });
    expect((await rejection(build('FROM alpine:3.19 AS a\nFROM alpine:3.19\nARG S=a\nRUN --mount=from=$S,target=/a make'))).message).toBe(
      'Dockerfile:4: RUN --mount from=$S: variable expansion is not supported for from; define a stage with FROM using a global ARG and mount from that stage instead',
    );
  });

  it('mounts are kept out of the history, as BuildKit writes it; a RUN without mounts has no mounts key', async () => {
    const r = await build('FROM alpine:3.19\nARG V=1\nRUN --mount=type=cache,target=/c --mount=type=secret,id=s make\nRUN make');
    expect(r.image.history.slice(-2).map((h) => h.created_by)).toEqual(['RUN |1 V=1 /bin/sh -c make # buildkit', 'RUN |1 V=1 /bin/sh -c make # buildkit']);
    expect(Object.keys(runAt(r, 4).op)).not.toContain('mounts');
    expect(runAt(r, 4).inputs).toHaveLength(1);
  });

  it('two mounts may share a target, as in BuildKit (the later one is on top)', async () => {
    const r = await build('FROM alpine:3.19\nRUN --mount=type=tmpfs,target=/x --mount=type=cache,target=/x make');
    expect(runAt(r, 2).op.mounts?.map((m) => m.type)).toEqual(['tmpfs', 'cache']);
  });
});

describe('stages a RUN mounts from', () => {
  const file = [
    'FROM alpine:3.19 AS deps', // 1
    'RUN fetch', // 2
    'FROM alpine:3.19 AS unused', // 3
    'RUN other', // 4
    'FROM alpine:3.19 AS app', // 5
    'RUN --mount=from=deps,source=/deps,target=/deps --mount=type=cache,from=later,target=/c build', // 6
    'FROM alpine:3.19 AS later', // 7
    'RUN seed', // 8
  ].join('\n');

  it('--target builds the stages it mounts from (defined before or after), and only those', async () => {
    const r = await build(file, { target: 'app' });
    expect(r.stages.map((s) => s.name)).toEqual(['deps', 'app', 'later']);
    expect(runAt(r, 6).inputs.slice(1)).toEqual([digestAt(r, 2), digestAt(r, 8)]);
  });

  it('a stage mounted by a tmpfs or ssh from= is a dependency too, as in BuildKit', async () => {
    const r = await build('FROM alpine:3.19 AS x\nRUN a\nFROM alpine:3.19 AS y\nRUN --mount=type=tmpfs,target=/t,from=x b', { target: 'y' });
    expect(r.stages.map((s) => s.name)).toEqual(['x', 'y']);
    expect(runAt(r, 4).inputs).toHaveLength(1);
  });

  it('refuses a bad from= with the line: a misspelt stage, a bad index, an unknown image, a cycle', async () => {
    const message = async (text: string) => (await rejection(build(text))).message;
    expect(await message('FROM alpine:3.19 AS builder\nFROM alpine:3.19\nRUN --mount=from=buidler,target=/b make')).toBe(
      'Dockerfile:3: RUN --mount from=buidler: no stage named "buidler" (did you mean "builder"?); a name that is not a stage is taken as an image, but this one looks like a misspelt stage name',
    );
    expect(await message('FROM alpine:3.19\nRUN --mount=from=3,target=/b make')).toBe('Dockerfile:2: RUN --mount from=3: invalid stage index 3 (stages are numbered 0 to 0)');
    expect(await message('FROM alpine:3.19\nRUN --mount=type=cache,from=nosuch/image,target=/b make')).toMatch(
      /^Dockerfile:2: RUN --mount from=nosuch\/image: there is no stage named "nosuch\/image", so it was taken as an image, which could not be resolved: pull access denied/,
    );
    expect(await message('FROM alpine:3.19 AS a\nRUN --mount=from=b,target=/b make\nFROM alpine:3.19 AS b\nCOPY --from=a /x /x')).toBe(
      'Dockerfile:2: circular dependency detected on stage: a (a -> b -> a, through RUN --mount and COPY --from on lines 2, 4)',
    );
  });
});

describe('RUN flags in a Dockerfile', () => {
  it('an invalid mount is an error naming the line and the mount as written', async () => {
    const err = await rejection(build('FROM alpine:3.19\nRUN --mount=type=cache,sharing=nope,target=/c make'));
    expect(err.message).toBe('Dockerfile:2: RUN --mount=type=cache,sharing=nope,target=/c: unsupported sharing value "nope" (use shared, private or locked)');
    expect((await rejection(build('FROM alpine:3.19\n\nRUN --mount=type=secret,id=a,from=x make'))).message).toMatch(/^Dockerfile:3: RUN --mount=type=secret,id=a,from=x: secret mount should not have a from/);
  });

  it('every refusal names the file, the line and the mount as written', async () => {
    // (An unbalanced quote is already the instruction's error: RUN has no command after it.)
    for (const [spec, why] of refusals.filter(([spec]) => !spec.includes('"'))) {
      const err = await rejection(build(`FROM alpine:3.19 AS base\n\nRUN --mount=${spec} make`));
      expect(err.message, spec).toMatch(new RegExp(`^Dockerfile:3: RUN --mount=${spec.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: ${why.source}`));
    }
  });

  it('a bind, cache or tmpfs mount without a target, or with a relative one, lands in WORKDIR', async () => {
    const r = await build('FROM alpine:3.19\nWORKDIR /app\nRUN --mount=type=bind,source=src,target=src --mount=type=cache,target=../cache --mount=type=tmpfs,target=. make');
    expect(runAt(r, 3).op.mounts?.map((m) => `${m.type} ${m.target ?? ''}`)).toEqual(['tmpfs /app', 'bind /app/src', 'cache /cache']);
  });

  it('only a mount that lands on / itself is refused', async () => {
    const err = await rejection(build('FROM alpine:3.19\nRUN --mount=type=bind make'));
    expect(err.message).toBe(
      'Dockerfile:2: RUN --mount=type=bind: invalid mount target "/" (a mount without a target is mounted at the working directory, which is /)',
    );
    expect((await rejection(build('FROM alpine:3.19\nWORKDIR /a\nRUN --mount=type=cache,target=.. make'))).message).toMatch(
      /^Dockerfile:3: RUN --mount=type=cache,target=\.\.: invalid mount target "\/" \(the relative target "\.\." is resolved against the working directory \/a\)$/,
    );
    expect((await rejection(build('FROM alpine:3.19\nRUN --mount=type=tmpfs,target=/ make'))).message).toBe('Dockerfile:2: RUN --mount=type=tmpfs,target=/: invalid mount target "/"');
  });

  it('RUN --device stays refused', async () => {
    expect((await rejection(build('FROM alpine:3.19\nRUN --device=/dev/fuse make'))).message).toBe('Dockerfile:2: RUN --device is not supported yet');
  });

  it('--security and --network are validated', async () => {
    expect((await rejection(build('FROM alpine:3.19\nRUN --security=root make'))).message).toMatch(/RUN --security=root: unsupported security mode/);
    expect((await rejection(build('FROM alpine:3.19\nRUN --security=insecure make'))).message).toMatch(/RUN --security=insecure is not allowed/);
    expect((await rejection(build('FROM alpine:3.19\nRUN --network=bridge make'))).message).toMatch(/RUN --network=bridge: unsupported network mode/);
    await expect(build('FROM alpine:3.19\nRUN --security=sandbox --network=none make')).resolves.toBeTruthy();
  });
});
