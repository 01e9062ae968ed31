// RUN --mount, --security, --network: parsed and validated as BuildKit does, even where the
// solver cannot run them yet.
import { describe, expect, it } from 'vitest';
import { parseMount } from '../../src/frontend/mounts.js';
import { build, rejection } from './helpers.js';

describe('parseMount', () => {
  it('parses each mount type with defaults', () => {
    expect(parseMount('type=cache,target=/root/.cache/pip')).toEqual({ type: 'cache', target: '/root/.cache/pip', readonly: false, sharing: 'shared' });
    expect(parseMount('target=/src')).toEqual({ type: 'bind', target: '/src', readonly: true });
    expect(parseMount('type=bind,from=build,source=/out,target=/in,rw')).toEqual({ type: 'bind', from: 'build', source: '/out', target: '/in', readonly: false });
    expect(parseMount('type=tmpfs,dst=/tmp,size=64m')).toEqual({ type: 'tmpfs', target: '/tmp', readonly: false, size: 64 * 1024 * 1024 });
    expect(parseMount('type=secret,id=npmrc')).toEqual({ type: 'secret', id: 'npmrc', target: '/run/secrets/npmrc', readonly: false });
    expect(parseMount('type=secret,id=token,env=TOKEN,required')).toMatchObject({ env: 'TOKEN', required: true });
    expect(parseMount('type=ssh')).toEqual({ type: 'ssh', target: '/run/buildkit/ssh_agent.0', readonly: false });
    expect(parseMount('type=cache,target=/c,id=x,sharing=locked,mode=0755,uid=1000,gid=1000')).toMatchObject({ id: 'x', sharing: 'locked', mode: 0o755, uid: 1000, gid: 1000 });
    expect(parseMount('"type=cache","target=/a,b"')).toMatchObject({ target: '/a,b' });
  });

  it('rejects what BuildKit rejects, saying what is wrong', () => {
    expect(() => parseMount('type=volume,target=/x')).toThrow(/unsupported mount type "volume"/);
    expect(() => parseMount('type=tmpfs,target=/t,from=x')).toThrow(/unexpected key "from" for a tmpfs mount/);
    expect(() => parseMount('type=cache,target=/c,sharing=sometimes')).toThrow(/unsupported sharing value "sometimes"/);
    expect(() => parseMount('type=cache,target=/c,mode=rwx')).toThrow(/invalid value for mode/);
    expect(() => parseMount('type=bind,target=/c,readonly=maybe')).toThrow(/invalid value for readonly/);
    expect(() => parseMount('type=secret')).toThrow(/needs an id or a target/);
  });
});

describe('RUN flags in a Dockerfile', () => {
  it('an invalid mount is an error naming the line and the mount', async () => {
    const err = await rejection(build('FROM alpine:3.19\nRUN --mount=type=cache,sharing=nope,target=/c make'));
    expect(err.message).toBe('Dockerfile:2: RUN --mount=type=cache,sharing=nope,target=/c: unsupported sharing value "nope" (use shared, private or locked)');
  });

  it('mount values expand variables', async () => {
    const err = await rejection(build('FROM alpine:3.19\nENV C=/root/.cache\nRUN --mount=type=cache,target=$C --mount=type=tmpfs,target=$C make'));
    expect(err.message).toBe('Dockerfile:3: RUN --mount: two mounts use the target /root/.cache');
  });

  it('valid mounts are reported as not supported yet, by type and target', async () => {
    const err = await rejection(build('FROM alpine:3.19\nRUN --mount=type=secret,id=a --mount=type=ssh --mount=type=secret,id=b,env=B make'));
    expect(err.message).toBe(
      "Dockerfile:2: RUN --mount (secret at /run/secrets/a, ssh at /run/buildkit/ssh_agent.0, secret as $B) is not supported yet by builder's solver; the mount was parsed and is valid",
    );
  });

  it('a bind, cache or tmpfs mount without a target, or with a relative one, lands in WORKDIR', async () => {
    const at = async (text: string) => (await rejection(build(`FROM alpine:3.19\nWORKDIR /app\n${text}`))).message.replace(/ is not supported yet.*/, '');
    expect(await at('RUN --mount=type=bind make')).toBe('Dockerfile:3: RUN --mount (bind at /app)');
    expect(await at('RUN --mount=type=bind,source=src,target=src --mount=type=cache,target=../cache --mount=type=tmpfs,target=. make')).toBe(
      'Dockerfile:3: RUN --mount (bind at /app/src, cache at /cache, tmpfs at /app)',
    );
    // Two mounts that land on the same directory are still one target too many.
    expect(await at('RUN --mount=type=bind --mount=type=tmpfs,target=/app make')).toBe('Dockerfile:3: RUN --mount: two mounts use the target /app');
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

  it('--security and --network are validated', async () => {
    expect((await rejection(build('FROM alpine:3.19\nRUN --security=root make'))).message).toMatch(/RUN --security=root: unsupported security mode/);
    expect((await rejection(build('FROM alpine:3.19\nRUN --security=insecure make'))).message).toMatch(/RUN --security=insecure is not allowed/);
    expect((await rejection(build('FROM alpine:3.19\nRUN --network=bridge make'))).message).toMatch(/RUN --network=bridge: unsupported network mode/);
    await expect(build('FROM alpine:3.19\nRUN --security=sandbox --network=none make')).resolves.toBeTruthy();
  });
});
