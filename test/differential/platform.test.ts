// The platform as Docker shows it: TARGETPLATFORM & co. in LABEL and RUN, and the image config's
// os / architecture / variant, for builds with and without --platform on a multi-platform base.
// The expected values were observed with Docker 20.10 (BuildKit) on an amd64 host; where a docker
// engine runs, the same builds go through it too and must agree. Also: a platform list is refused.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/client/build.js';
import { pushMultiPlatformImage } from '../helpers/base-image.js';
import { runBuilder } from '../helpers/cli.js';
import { DOCKER, dockerSkipReason } from '../helpers/differential.js';
import { registryUnavailable, startRegistry, type RunningRegistry } from '../helpers/registry.js';

const dockerMissing = dockerSkipReason();
const hostIsAmd64 = process.arch === 'x64';
const skip = registryUnavailable() ?? (hostIsAmd64 ? undefined : 'the observed values are those of an amd64 host');

const ARGS = 'ARG TARGETPLATFORM\nARG TARGETOS\nARG TARGETARCH\nARG TARGETVARIANT\nARG BUILDPLATFORM\nARG BUILDARCH\nARG BUILDVARIANT\n';
const LABEL = 'LABEL tp=$TARGETPLATFORM to=$TARGETOS ta=$TARGETARCH tv=[$TARGETVARIANT] bp=$BUILDPLATFORM ba=$BUILDARCH bv=[$BUILDVARIANT]\n';

interface Seen {
  labels: Record<string, string>;
  /** os/architecture[/variant] of the image config. */
  config: string;
}

const build0 = { bp: 'linux/amd64', ba: 'amd64', bv: '[]' };
const target = (tp: string, ta: string, tv = '') => ({ tp, to: 'linux', ta, tv: `[${tv}]`, ...build0 });

/** --platform (none: the default) → what Docker 20.10 showed. */
const OBSERVED: Array<{ platform?: string; from?: string; seen: Seen }> = [
  { seen: { labels: target('linux/amd64', 'amd64'), config: 'linux/amd64' } },
  { platform: 'linux/amd64', seen: { labels: target('linux/amd64', 'amd64'), config: 'linux/amd64' } },
  { platform: 'linux/amd64/v1', seen: { labels: target('linux/amd64', 'amd64'), config: 'linux/amd64' } },
  { platform: 'linux/x86_64', seen: { labels: target('linux/amd64', 'amd64'), config: 'linux/amd64' } },
  { platform: 'linux/amd64/v2', seen: { labels: target('linux/amd64/v2', 'amd64', 'v2'), config: 'linux/amd64/v2' } },
  { platform: 'linux/arm64', seen: { labels: target('linux/arm64', 'arm64'), config: 'linux/arm64' } },
  { platform: 'linux/arm64/v8', seen: { labels: target('linux/arm64', 'arm64'), config: 'linux/arm64' } },
  { platform: 'linux/aarch64', seen: { labels: target('linux/arm64', 'arm64'), config: 'linux/arm64' } },
  { platform: 'linux/arm', seen: { labels: target('linux/arm/v7', 'arm', 'v7'), config: 'linux/arm/v7' } },
  { platform: 'linux/armhf', seen: { labels: target('linux/arm/v7', 'arm', 'v7'), config: 'linux/arm/v7' } },
  // FROM --platform without --platform: the target stays the host's, the image is its base's.
  { from: 'linux/arm64', seen: { labels: target('linux/amd64', 'amd64'), config: 'linux/arm64' } },
];

describe.skipIf(Boolean(skip))(`platform ARGs and config fields as Docker has them${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let reg: RunningRegistry;
  let work: string;
  let base: string;
  const dockerTags: string[] = [];

  beforeAll(async () => {
    reg = await startRegistry();
    work = await mkdtemp(join(tmpdir(), 'builder-platform-diff-'));
    base = (await pushMultiPlatformImage(reg.host, 'multi/busybox', '1', ['linux/amd64', 'linux/arm64', 'linux/arm/v7'])).ref;
    if (dockerMissing) console.warn(`platform builds are not compared with docker: ${dockerMissing}`);
  });

  afterAll(async () => {
    for (const tag of dockerTags) spawnSync(DOCKER, ['rmi', '-f', tag]);
    await reg?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  async function context(name: string, dockerfile: string): Promise<string> {
    const ctx = join(work, name);
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), dockerfile);
    return ctx;
  }

  function docker(ctx: string, platform: string | undefined, tag: string): { seen: Seen; output: string } {
    dockerTags.push(tag);
    const args = ['build', '--network=none', '--progress=plain', ...(platform ? ['--platform', platform] : []), '-t', tag, ctx];
    const r = spawnSync(DOCKER, args, { encoding: 'utf8', env: { ...process.env, DOCKER_BUILDKIT: '1' } });
    if (r.status !== 0) throw new Error(`docker ${args.join(' ')}: ${r.stderr}`);
    const [image] = JSON.parse(spawnSync(DOCKER, ['image', 'inspect', tag], { encoding: 'utf8' }).stdout) as Array<{
      Os: string;
      Architecture: string;
      Variant?: string;
      Config: { Labels: Record<string, string> };
    }>;
    return { seen: { labels: image!.Config.Labels, config: [image!.Os, image!.Architecture, image!.Variant].filter(Boolean).join('/') }, output: r.stderr };
  }

  it.each(OBSERVED.map((c) => [c.platform ?? (c.from ? `FROM --platform=${c.from}` : 'no --platform'), c] as const))('%s', async (name, c) => {
    const ctx = await context(name.replace(/\W+/g, '-'), `FROM ${c.from ? `--platform=${c.from} ` : ''}${base}\n${ARGS}${LABEL}`);
    const warnings: string[] = [];
    const ours = await build({
      context: ctx,
      root: join(work, 'root'),
      insecureRegistries: [reg.host],
      ...(c.platform ? { platform: c.platform } : {}),
      onProgress: (e) => void (e.type === 'warning' && warnings.push(e.message)),
    });
    const seen: Seen = { labels: ours.config.config?.Labels ?? {}, config: [ours.config.os, ours.config.architecture, ours.config.variant].filter(Boolean).join('/') };
    expect(seen).toEqual(c.seen);
    expect(warnings).toEqual([]);
    if (!dockerMissing) expect(docker(ctx, c.platform, `builder-platform-diff/${name.replace(/\W+/g, '-').toLowerCase()}:test`).seen).toEqual(c.seen);
  });

  it('RUN sees the same platform ARGs', async () => {
    const line = 'tp=[$TARGETPLATFORM] ta=[$TARGETARCH] tv=[$TARGETVARIANT] bp=[$BUILDPLATFORM] bv=[$BUILDVARIANT]';
    const ctx = await context('run', `FROM ${base}\n${ARGS}RUN echo "${line}"\n`);
    const logs: string[] = [];
    await build({ context: ctx, root: join(work, 'root'), network: 'none', insecureRegistries: [reg.host], onProgress: (e) => void (e.type === 'log' && logs.push(e.data)) });
    const expected = 'tp=[linux/amd64] ta=[amd64] tv=[] bp=[linux/amd64] bv=[]';
    expect(logs.join('')).toContain(expected);
    if (!dockerMissing) expect(docker(ctx, undefined, 'builder-platform-diff/run:test').output).toContain(expected);
  });

  it('refuses a list of platforms with a clear error, writing nothing', async () => {
    const ctx = await context('list', `FROM ${base}\n`);
    const root = join(work, 'list-root');
    const r = await runBuilder(['build', '--root', root, '--platform', 'linux/amd64,linux/arm64', ctx]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'invalid platform "linux/amd64,linux/arm64": a list of platforms needs a multi-platform build, which builder does not do yet: give one platform, e.g. linux/arm64',
    );
    expect(existsSync(root)).toBe(false);
    await writeFile(join(ctx, 'Dockerfile'), `ARG P=linux/amd64,linux/arm64\nFROM --platform=$P ${base}\n`);
    const from = await runBuilder(['build', '--root', root, ctx]);
    expect(from.code).toBe(2);
    expect(from.stderr).toContain('Dockerfile:2');
    expect(from.stderr).toContain('FROM --platform=$P: invalid platform "linux/amd64,linux/arm64": a list of platforms');
  });
});
