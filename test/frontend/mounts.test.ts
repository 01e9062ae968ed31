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
    expect(() => parseMount('type=cache')).toThrow(/a cache mount needs a target/);
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

  it('valid mounts are reported as not supported yet, by type', async () => {
    const err = await rejection(build('FROM alpine:3.19\nRUN --mount=type=secret,id=a --mount=type=ssh make'));
    expect(err.message).toBe("Dockerfile:2: RUN --mount (type secret, ssh) is not supported yet by builder's solver; the mount was parsed and is valid");
  });

  it('--security and --network are validated', async () => {
    expect((await rejection(build('FROM alpine:3.19\nRUN --security=root make'))).message).toMatch(/RUN --security=root: unsupported security mode/);
    expect((await rejection(build('FROM alpine:3.19\nRUN --security=insecure make'))).message).toMatch(/RUN --security=insecure is not allowed/);
    expect((await rejection(build('FROM alpine:3.19\nRUN --network=bridge make'))).message).toMatch(/RUN --network=bridge: unsupported network mode/);
    await expect(build('FROM alpine:3.19\nRUN --security=sandbox --network=none make')).resolves.toBeTruthy();
  });
});
