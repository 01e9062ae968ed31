// Predefined build args: the proxy args (usable without ARG, kept out of history and cache keys)
// and the automatic platform args.
import { describe, expect, it } from 'vitest';
import { build, envOf, execs } from './helpers.js';

describe('proxy build args', () => {
  it('reach RUN without an ARG, but stay out of history, env and unconsumed warnings', async () => {
    const r = await build('FROM alpine:3.19\nRUN wget http://example.com', { buildArgs: { HTTP_PROXY: 'http://proxy:3128', no_proxy: 'localhost' } });
    const [run] = execs(r.definition);
    expect(run!.proxyEnv).toEqual(['HTTP_PROXY=http://proxy:3128', 'no_proxy=localhost']);
    expect(envOf(run!)).not.toHaveProperty('HTTP_PROXY');
    expect(r.image.history.at(-1)!.created_by).not.toContain('proxy');
    expect(r.image.config.Env?.some((e) => e.includes('PROXY'))).toBe(false);
    expect(r.warnings.filter((w) => w.message.includes('not consumed'))).toEqual([]);
  });

  it('a declared ARG makes a proxy arg an ordinary build arg (in env and history)', async () => {
    const r = await build('FROM alpine:3.19\nARG HTTP_PROXY\nRUN wget http://example.com', { buildArgs: { HTTP_PROXY: 'http://p:1' } });
    const [run] = execs(r.definition);
    expect(run!.proxyEnv).toBeUndefined();
    expect(envOf(run!).HTTP_PROXY).toBe('http://p:1');
    expect(r.image.history.at(-1)!.created_by).toContain('HTTP_PROXY=http://p:1');
  });

  it('without proxy args the op has no proxyEnv (digests unchanged)', async () => {
    const r = await build('FROM alpine:3.19\nRUN true');
    expect(execs(r.definition)[0]).not.toHaveProperty('proxyEnv');
  });
});

describe('automatic platform args', () => {
  const text = [
    'FROM alpine:3.19',
    'ARG TARGETPLATFORM',
    'ARG TARGETOS',
    'ARG TARGETARCH',
    'ARG TARGETVARIANT',
    'ARG BUILDPLATFORM',
    'ARG BUILDOS',
    'ARG BUILDARCH',
    'ARG TARGETSTAGE',
    'RUN true',
  ].join('\n');

  it('are declared-once values for the target and build platforms', async () => {
    const r = await build(text, {
      platform: { os: 'linux', architecture: 'arm', variant: 'v7' },
      buildPlatform: { os: 'linux', architecture: 'amd64' },
      resolveImage: (await import('./helpers.js')).fakeResolver(),
    });
    expect(envOf(execs(r.definition)[0]!)).toMatchObject({
      TARGETPLATFORM: 'linux/arm/v7',
      TARGETOS: 'linux',
      TARGETARCH: 'arm',
      TARGETVARIANT: 'v7',
      BUILDPLATFORM: 'linux/amd64',
      BUILDOS: 'linux',
      BUILDARCH: 'amd64',
      TARGETSTAGE: '',
    });
  });

  it('are not in a stage without ARG, but are usable in FROM', async () => {
    const r = await build('FROM --platform=$BUILDPLATFORM alpine:3.19 AS build\nENV A=x${TARGETARCH}\nRUN true');
    expect(envOf(execs(r.definition)[0]!).A).toBe('x');
  });

  it('TARGETSTAGE names the target stage', async () => {
    const r = await build('FROM alpine:3.19 AS one\nARG TARGETSTAGE\nRUN echo $TARGETSTAGE\nFROM alpine:3.19 AS two', { target: 'one' });
    expect(envOf(execs(r.definition)[0]!).TARGETSTAGE).toBe('one');
  });
});
