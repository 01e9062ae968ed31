// The platform module against containerd's own rules (its platforms_test.go and compare_test.go
// cases, and what Docker 20.10 printed for `--platform` here).

import { describe, expect, it } from 'vitest';
import { formatPlatform, normalizePlatform, parsePlatform, platformRank, selectManifest, toPlatform } from '../../src/oci/platform.js';
import type { Descriptor, Platform } from '../../src/oci/types.js';

const linuxAmd64: Platform = { os: 'linux', architecture: 'amd64' };

describe('parsePlatform normalises as containerd does', () => {
  // [specifier, what TARGETPLATFORM / the image config show]; the Docker column was observed
  // with `docker build --platform X` (Docker 20.10) and LABEL tp=$TARGETPLATFORM.
  const cases: Array<[string, string]> = [
    ['linux/amd64', 'linux/amd64'],
    ['linux/amd64/v1', 'linux/amd64'],
    ['linux/amd64/v2', 'linux/amd64/v2'],
    ['linux/x86_64', 'linux/amd64'],
    ['Linux/x86_64', 'linux/amd64'],
    ['x86_64', 'linux/amd64'],
    ['linux/x86-64', 'linux/amd64'],
    ['linux/arm64', 'linux/arm64'],
    ['linux/arm64/v8', 'linux/arm64'],
    ['linux/arm64/8', 'linux/arm64'],
    ['linux/arm64/v9', 'linux/arm64/v9'],
    ['linux/aarch64', 'linux/arm64'],
    ['Aarch64', 'linux/arm64'],
    ['Linux/ARM64', 'linux/arm64'],
    ['arm64', 'linux/arm64'],
    ['linux/arm', 'linux/arm/v7'],
    ['linux/arm/7', 'linux/arm/v7'],
    ['linux/arm/v7', 'linux/arm/v7'],
    ['linux/arm/v6', 'linux/arm/v6'],
    ['linux/arm/5', 'linux/arm/v5'],
    ['linux/armhf', 'linux/arm/v7'],
    ['armhf', 'linux/arm/v7'],
    ['armel', 'linux/arm/v6'],
    ['arm', 'linux/arm/v7'],
    ['i386', 'linux/386'],
    ['s390x', 'linux/s390x'],
    ['linux/s390x', 'linux/s390x'],
    ['linux', 'linux/amd64'],
    ['windows', 'windows/amd64'],
    ['macOS', 'darwin/amd64'],
    ['windows/amd64', 'windows/amd64'],
  ];
  it.each(cases)('%s → %s', (input, expected) => {
    expect(formatPlatform(parsePlatform(input, linuxAmd64))).toBe(expected);
  });

  it('has no variant for amd64 and arm64, so none is written into an image config', () => {
    expect(parsePlatform('linux/amd64/v1', linuxAmd64)).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(parsePlatform('linux/arm64/v8', linuxAmd64)).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(normalizePlatform({ os: 'Linux', architecture: 'x86_64', variant: 'v1' })).toEqual({ os: 'linux', architecture: 'amd64' });
  });

  it.each([
    ['', /the operating system is empty/],
    ['/linux/arm', /the operating system is empty/],
    ['linux/arm/', /a component is empty/],
    ['linux /arm', /"linux " is not an operating system or architecture/],
    ['linux/&arm', /"&arm" is not a valid component/],
    ['linux/arm/foo/bar', /expected os\/arch\[\/variant\]/],
    ['linux/*', /wildcards/],
    ['notanarch', /unknown operating system or architecture/],
  ])('refuses %j', (input, message) => {
    expect(() => parsePlatform(input, linuxAmd64)).toThrow(message);
  });

  it('refuses a list with a message saying why, instead of misreading it', () => {
    expect(() => parsePlatform('linux/amd64,linux/arm64')).toThrow(
      'invalid platform "linux/amd64,linux/arm64": a list of platforms needs a multi-platform build, which builder does not do yet: give one platform, e.g. linux/arm64',
    );
  });

  it('checks platform objects from library callers as it checks specifiers', () => {
    expect(toPlatform({ os: 'linux', architecture: 'aarch64', variant: 'v8' })).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(toPlatform('linux/arm')).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(() => toPlatform({ os: 'linux', architecture: 'amd64,linux', variant: 'arm64' })).toThrow(/a list of platforms/);
    expect(() => toPlatform({ os: 'linux', architecture: '' })).toThrow(/os and architecture are both needed/);
  });
});

describe('matching follows containerd platforms.Only', () => {
  // From containerd's TestOnly: what each platform accepts and refuses.
  const only: Array<[string, string[], string[]]> = [
    ['linux/amd64', ['linux/amd64', 'linux/amd64/v1', 'linux/386'], ['linux/amd64/v2', 'linux/arm/v7', 'linux/arm64', 'windows/amd64']],
    ['linux/amd64/v2', ['linux/amd64', 'linux/amd64/v1', 'linux/amd64/v2', 'linux/386'], ['linux/amd64/v3', 'linux/amd64/v4', 'linux/arm64']],
    ['linux/amd64/v3', ['linux/amd64/v3', 'linux/amd64/v2', 'linux/amd64'], ['linux/amd64/v4']],
    ['linux/386', ['linux/386'], ['linux/amd64', 'linux/arm/v7']],
    ['linux/arm/v8', ['linux/arm', 'linux/arm/v5', 'linux/arm/v6', 'linux/arm/v7', 'linux/arm/v8'], ['linux/arm/v4', 'linux/arm64', 'linux/amd64']],
    ['linux/arm/v7', ['linux/arm', 'linux/arm/v5', 'linux/arm/v6', 'linux/arm/v7'], ['linux/arm/v4', 'linux/arm/v8', 'linux/arm64']],
    ['linux/arm/v6', ['linux/arm/v5', 'linux/arm/v6'], ['linux/arm', 'linux/arm/v7', 'linux/arm/v4']],
    ['linux/arm/v5', ['linux/arm/v5'], ['linux/arm', 'linux/arm/v4', 'linux/arm/v6']],
    ['linux/arm64', ['linux/arm', 'linux/arm/v5', 'linux/arm/v8', 'linux/arm64', 'linux/arm64/v8', 'linux/aarch64'], ['linux/amd64', 'linux/arm/v4', 'linux/arm/v9', 'linux/arm64/v9', 'windows/arm']],
    ['linux/arm64/v8.1', ['linux/arm/v8', 'linux/arm64', 'linux/arm64/v8.1'], ['linux/arm64/v8.2', 'linux/arm64/v9']],
    ['linux/arm64/v9', ['linux/arm/v7', 'linux/arm64', 'linux/arm64/v8.5', 'linux/arm64/v9', 'linux/arm64/v9.0'], ['linux/arm64/v8.6', 'linux/arm/v4']],
    ['linux/arm64/v9.6', ['linux/arm64/v8.9', 'linux/arm64/v9.6', 'linux/arm/v5'], ['linux/arm64/v8.10', 'linux/arm64/v9.7', 'linux/amd64']],
  ];
  it.each(only)('%s', (wanted, accepted, refused) => {
    const w = parsePlatform(wanted);
    for (const c of accepted) expect(platformRank(w, parsePlatform(c)), `${wanted} takes ${c}`).not.toBeUndefined();
    for (const c of refused) expect(platformRank(w, parsePlatform(c)), `${wanted} refuses ${c}`).toBeUndefined();
  });

  const entry = (platform: string, extra: Partial<Descriptor> = {}): Descriptor => ({
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: `sha256:${Buffer.from(platform).toString('hex').padEnd(64, '0').slice(0, 64)}`,
    size: 1,
    platform: ((): Platform => {
      const [os = '', architecture = '', variant] = platform.split('/');
      return variant ? { os, architecture, variant } : { os, architecture };
    })(),
    ...extra,
  });
  const pick = (entries: Descriptor[], wanted: string) => {
    const chosen = selectManifest(entries, parsePlatform(wanted));
    return chosen && formatPlatform(chosen.platform as Platform);
  };

  it('picks the best entry in containerd order, whatever the index order', () => {
    const index = [entry('linux/386'), entry('linux/amd64/v2'), entry('linux/amd64'), entry('linux/arm/v6'), entry('linux/arm/v7'), entry('linux/arm64/v8')];
    expect(pick(index, 'linux/amd64')).toBe('linux/amd64');
    expect(pick(index, 'linux/amd64/v3')).toBe('linux/amd64/v2');
    expect(pick([entry('linux/386'), entry('linux/amd64/v1')], 'linux/amd64')).toBe('linux/amd64/v1');
    expect(pick([entry('linux/386')], 'linux/amd64')).toBe('linux/386');
    expect(pick(index, 'linux/arm')).toBe('linux/arm/v7');
    expect(pick(index, 'linux/arm64')).toBe('linux/arm64/v8');
    expect(pick([entry('linux/arm/v6'), entry('linux/arm/v7')], 'linux/arm64')).toBe('linux/arm/v7');
    expect(pick([entry('linux/arm/v7')], 'linux/arm/v6')).toBeUndefined();
    expect(pick(index, 'windows/amd64')).toBeUndefined();
  });

  it('skips attestation manifests and entries without a platform', () => {
    const attestation = entry('linux/amd64', { annotations: { 'vnd.docker.reference.type': 'attestation-manifest' } });
    const { platform: _none, ...bare } = entry('linux/amd64');
    expect(selectManifest([attestation, bare], linuxAmd64)).toBeUndefined();
  });
});
