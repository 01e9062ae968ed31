// RUN --network=host and RUN --security=insecure need an entitlement the build grants (BuildKit's
// `--allow`): a Dockerfile may not widen the sandbox the person running the build chose.
import { describe, expect, it } from 'vitest';
import { DockerfileError } from '../../src/frontend/index.js';
import { build, execs, rejection } from './helpers.js';

describe('entitlements', () => {
  it('RUN --network=host without network.host fails at its line, naming the flag to pass', async () => {
    const text = 'FROM alpine:3.19\nRUN echo ok\nRUN --network=host wget -q http://127.0.0.1/';
    const err = await rejection(build(text));
    expect(err).toBeInstanceOf(DockerfileError);
    expect(err.message).toBe('Dockerfile:3: RUN --network=host is not allowed: the build must grant the network.host entitlement (builder build --allow network.host)');
    // Whatever the default network: `none` chosen by the user cannot be widened either.
    await expect(build(text, { defaultNetwork: 'none' })).rejects.toThrow(/Dockerfile:3: RUN --network=host is not allowed/);
    // Another entitlement is not this one.
    await expect(build(text, { allow: ['security.insecure'] })).rejects.toThrow(/network\.host entitlement/);
  });

  it('with network.host granted, the step gets the host network even when the default is none', async () => {
    const result = await build('FROM alpine:3.19\nRUN --network=host echo a\nRUN echo b', { defaultNetwork: 'none', allow: ['network.host'] });
    expect(execs(result.definition).map((op) => [op.args.at(-1), op.network])).toEqual([['echo a', 'host'], ['echo b', 'none']]);
  });

  it('RUN --network=none and --security=sandbox need nothing', async () => {
    const result = await build('FROM alpine:3.19\nRUN --network=none --security=sandbox echo a');
    expect(execs(result.definition)).toEqual([expect.objectContaining({ network: 'none' })]);
    expect(execs(result.definition)[0]).not.toHaveProperty('security');
  });

  it('RUN --security=insecure needs security.insecure, and is a different step from a sandboxed one', async () => {
    const err = await rejection(build('FROM alpine:3.19\nRUN --security=insecure mount -t tmpfs t /mnt'));
    expect(err.message).toBe('Dockerfile:2: RUN --security=insecure is not allowed: the build must grant the security.insecure entitlement (builder build --allow security.insecure)');
    const insecure = await build('FROM alpine:3.19\nRUN --security=insecure make', { allow: ['security.insecure'] });
    const sandboxed = await build('FROM alpine:3.19\nRUN make', { allow: ['security.insecure'] });
    expect(execs(insecure.definition)).toEqual([expect.objectContaining({ security: 'insecure' })]);
    expect(insecure.root).not.toBe(sandboxed.root);
  });
});
