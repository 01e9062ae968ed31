import { describe, expect, it } from 'vitest';
import {
  ImageReference,
  InvalidReferenceError,
  isInsecureByDefault,
  parseReference,
  registryHost,
} from '../../src/registry/index.js';
import { normaliseAuthKey, parseChallenges } from '../../src/registry/auth.js';

const D = `sha256:${'a'.repeat(64)}`;

describe('parseReference normalises like docker', () => {
  const table: Array<[input: string, registry: string, repository: string, tag: string | undefined, digest: string | undefined, canonical: string, familiar: string]> = [
    ['busybox', 'docker.io', 'library/busybox', 'latest', undefined, 'docker.io/library/busybox:latest', 'busybox'],
    ['busybox:1.36', 'docker.io', 'library/busybox', '1.36', undefined, 'docker.io/library/busybox:1.36', 'busybox'],
    ['user/app', 'docker.io', 'user/app', 'latest', undefined, 'docker.io/user/app:latest', 'user/app'],
    ['docker.io/library/busybox', 'docker.io', 'library/busybox', 'latest', undefined, 'docker.io/library/busybox:latest', 'busybox'],
    ['index.docker.io/library/busybox:1', 'docker.io', 'library/busybox', '1', undefined, 'docker.io/library/busybox:1', 'busybox'],
    ['registry-1.docker.io/user/app:2', 'docker.io', 'user/app', '2', undefined, 'docker.io/user/app:2', 'user/app'],
    ['docker.io/busybox', 'docker.io', 'library/busybox', 'latest', undefined, 'docker.io/library/busybox:latest', 'busybox'],
    ['localhost/x', 'localhost', 'x', 'latest', undefined, 'localhost/x:latest', 'localhost/x'],
    ['localhost:5000/x', 'localhost:5000', 'x', 'latest', undefined, 'localhost:5000/x:latest', 'localhost:5000/x'],
    ['127.0.0.1:5000/user/app:1.2', '127.0.0.1:5000', 'user/app', '1.2', undefined, '127.0.0.1:5000/user/app:1.2', '127.0.0.1:5000/user/app'],
    ['host:8080/a/b/c:tag', 'host:8080', 'a/b/c', 'tag', undefined, 'host:8080/a/b/c:tag', 'host:8080/a/b/c'],
    ['ghcr.io/org/tool:v1.0.0-rc_1', 'ghcr.io', 'org/tool', 'v1.0.0-rc_1', undefined, 'ghcr.io/org/tool:v1.0.0-rc_1', 'ghcr.io/org/tool'],
    ['[::1]:5000/app', '[::1]:5000', 'app', 'latest', undefined, '[::1]:5000/app:latest', '[::1]:5000/app'],
    [`busybox@${D}`, 'docker.io', 'library/busybox', undefined, D, `docker.io/library/busybox@${D}`, 'busybox'],
    [`busybox:1.36@${D}`, 'docker.io', 'library/busybox', '1.36', D, `docker.io/library/busybox:1.36@${D}`, 'busybox'],
    [`localhost:5000/x:t@${D}`, 'localhost:5000', 'x', 't', D, `localhost:5000/x:t@${D}`, 'localhost:5000/x'],
    ['a__b/c.d-e--f', 'docker.io', 'a__b/c.d-e--f', 'latest', undefined, 'docker.io/a__b/c.d-e--f:latest', 'a__b/c.d-e--f'],
    ['library/busybox/extra', 'docker.io', 'library/busybox/extra', 'latest', undefined, 'docker.io/library/busybox/extra:latest', 'library/busybox/extra'],
  ];

  it.each(table)('%s', (input, registry, repository, tag, digest, canonical, familiar) => {
    const ref = parseReference(input);
    expect(ref).toBeInstanceOf(ImageReference);
    expect({ registry: ref.registry, repository: ref.repository, tag: ref.tag, digest: ref.digest }).toEqual({ registry, repository, tag, digest });
    expect(ref.toString()).toBe(canonical);
    expect(ref.familiarName).toBe(familiar);
    // The canonical form parses back to itself.
    expect(parseReference(ref.toString()).toString()).toBe(canonical);
  });

  it('pulls by digest when both tag and digest are given, keeping the tag for display', () => {
    const ref = parseReference(`busybox:1.36@${D}`);
    expect(ref.pullReference).toBe(D);
    expect(ref.familiarString).toBe(`busybox:1.36@${D}`);
    expect(parseReference('busybox').pullReference).toBe('latest');
  });

  it('keeps the tag when a digest is attached after resolving', () => {
    const ref = parseReference('127.0.0.1:5000/app:1').withDigest(D as `sha256:${string}`);
    expect(ref.toString()).toBe(`127.0.0.1:5000/app:1@${D}`);
  });

  const invalid: Array<[input: string, reason: RegExp]> = [
    ['', /empty reference/],
    ['Busybox', /must be lowercase/],
    ['user/App:1', /must be lowercase/],
    ['localhost:5000/MyApp', /must be lowercase/],
    ['busybox:bad/tag', /invalid registry "busybox:bad"/],
    ['busybox:-x', /invalid tag "-x"/],
    ['busybox:.x', /invalid tag ".x"/],
    ['busybox:a+b', /invalid tag "a\+b"/],
    [`busybox:${'t'.repeat(129)}`, /longer than 128/],
    ['busybox@sha256:abc', /invalid digest "sha256:abc"/],
    [`busybox@sha256:${'A'.repeat(64)}`, /invalid digest/],
    [`busybox@sha512:${'a'.repeat(128)}`, /unsupported digest algorithm/],
    ['busy--box_', /invalid repository path component "busy--box_"/],
    ['user//app', /empty path component/],
    ['/app', /empty path component/],
    ['app/', /empty path component/],
    ['-host.com/app', /invalid registry "-host.com"/],
    [`${'a/'.repeat(130)}b`, /longer than 255/],
  ];

  it.each(invalid)('rejects %j', (input, reason) => {
    expect(() => parseReference(input)).toThrow(InvalidReferenceError);
    expect(() => parseReference(input)).toThrow(reason);
  });

  it('accepts a tag of exactly 128 characters', () => {
    expect(parseReference(`busybox:${'t'.repeat(128)}`).tag).toHaveLength(128);
  });
});

describe('registry hosts', () => {
  it('talks to registry-1.docker.io for Docker Hub', () => {
    expect(registryHost('docker.io')).toBe('registry-1.docker.io');
    expect(registryHost('index.docker.io')).toBe('registry-1.docker.io');
    expect(registryHost('127.0.0.1:5000')).toBe('127.0.0.1:5000');
  });

  it('uses plain HTTP only for loopback and listed insecure registries', () => {
    for (const h of ['localhost', 'localhost:5000', '127.0.0.1:5000', '127.3.4.5', '[::1]:5000', '::1']) {
      expect(isInsecureByDefault(h), h).toBe(true);
    }
    for (const h of ['registry-1.docker.io', 'ghcr.io', '10.0.0.1:5000', 'localhost.example.com', '128.0.0.1']) {
      expect(isInsecureByDefault(h), h).toBe(false);
    }
    expect(isInsecureByDefault('myreg.lan:5000', ['myreg.lan:5000'])).toBe(true);
    expect(isInsecureByDefault('myreg.lan:5000', ['myreg.lan'])).toBe(true);
    expect(isInsecureByDefault('myreg.lan:5000', ['other.lan'])).toBe(false);
  });

  it('maps docker config keys to registry names', () => {
    expect(normaliseAuthKey('https://index.docker.io/v1/')).toBe('docker.io');
    expect(normaliseAuthKey('registry-1.docker.io')).toBe('docker.io');
    expect(normaliseAuthKey('http://127.0.0.1:5000/v2/')).toBe('127.0.0.1:5000');
    expect(normaliseAuthKey('ghcr.io')).toBe('ghcr.io');
  });
});

describe('WWW-Authenticate challenges', () => {
  it('parses Docker Hub style bearer challenges', () => {
    const [c] = parseChallenges(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
    );
    expect(c).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' },
    });
  });

  it('parses basic challenges, escaped quotes and several challenges in one header', () => {
    const cs = parseChallenges('Basic realm="a \\"quoted\\" realm", Bearer realm="https://x/token",error="insufficient_scope"');
    expect(cs).toEqual([
      { scheme: 'basic', params: { realm: 'a "quoted" realm' } },
      { scheme: 'bearer', params: { realm: 'https://x/token', error: 'insufficient_scope' } },
    ]);
    expect(parseChallenges(undefined)).toEqual([]);
    expect(parseChallenges('Negotiate abc')).toEqual([]);
  });
});
