// Platforms, as containerd's `platforms` package has them (the rules BuildKit and Docker use):
// parsing `--platform` specifiers, normalising (aliases, default variants), formatting, and
// choosing an image index entry with the order `platforms.Only` gives.
//
//   parsePlatform('linux/arm64/v8')   → { os: 'linux', architecture: 'arm64' }
//   parsePlatform('linux/arm')        → { os: 'linux', architecture: 'arm', variant: 'v7' }
//   parsePlatform('x86_64')           → { os: 'linux', architecture: 'amd64' } (on a linux host)
//   formatPlatform(...)               → 'linux/arm/v7'
//   selectManifest(index.manifests, { os: 'linux', architecture: 'amd64' })

import type { Descriptor, Platform } from './types.js';

/** Operating systems a one-word specifier may name (Go's list, as containerd has it). */
const KNOWN_OS = new Set([
  'aix', 'android', 'darwin', 'dragonfly', 'freebsd', 'hurd', 'illumos', 'ios', 'js', 'linux', 'nacl', 'netbsd', 'openbsd',
  'plan9', 'solaris', 'windows', 'zos',
]);

/** Architectures a one-word specifier may name. */
const KNOWN_ARCH = new Set([
  '386', 'amd64', 'amd64p32', 'arm', 'armbe', 'arm64', 'arm64be', 'ppc64', 'ppc64le', 'loong64', 'mips', 'mipsle', 'mips64',
  'mips64le', 'mips64p32', 'mips64p32le', 'ppc', 'riscv', 'riscv64', 's390', 's390x', 'sparc', 'sparc64', 'wasm',
]);

const COMPONENT = /^[A-Za-z0-9_.-]+$/;
const OS_COMPONENT = /^[A-Za-z0-9_-]+$/;

/** Node's `process.arch` in Go's (and OCI's) terms. */
const NODE_ARCH: Record<string, string> = { x64: 'amd64', ia32: '386', arm: 'arm', arm64: 'arm64', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' };

/** The platform of this machine, normalised (`linux/amd64`: amd64 has no default variant). */
export function hostPlatform(): Platform {
  return normalizePlatform({ os: process.platform === 'win32' ? 'windows' : process.platform, architecture: NODE_ARCH[process.arch] ?? process.arch });
}

/**
 * containerd's `Normalize`: lower case, `macos` → darwin, architecture aliases (x86_64, aarch64,
 * armhf, armel, i386), amd64 `v1` and arm64 `v8` dropped (they are the defaults), arm without a
 * variant → `v7`, bare numbers → `vN`. Other fields are kept.
 */
export function normalizePlatform(p: Platform): Platform {
  const { variant: _drop, ...rest } = p;
  const os = p.os === '' ? '' : p.os.toLowerCase() === 'macos' ? 'darwin' : p.os.toLowerCase();
  const [architecture, variant] = normalizeArch(p.architecture, p.variant ?? '');
  return variant ? { ...rest, os, architecture, variant } : { ...rest, os, architecture };
}

function normalizeArch(arch: string, variant: string): [string, string] {
  const a = arch.toLowerCase();
  const v = variant.toLowerCase();
  switch (a) {
    case 'i386':
      return ['386', ''];
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      return ['amd64', v === 'v1' ? '' : v];
    case 'aarch64':
    case 'arm64':
      if (v === '8' || v === 'v8' || v === 'v8.0') return ['arm64', ''];
      if (v === '9' || v === '9.0' || v === 'v9.0') return ['arm64', 'v9'];
      return ['arm64', v];
    case 'armhf':
      return ['arm', 'v7'];
    case 'armel':
      return ['arm', 'v6'];
    case 'arm':
      if (v === '' || v === '7') return ['arm', 'v7'];
      if (v === '5' || v === '6' || v === '8') return ['arm', `v${v}`];
      return ['arm', v];
    default:
      return [a, v];
  }
}

/**
 * Parses a specifier, `os`, `arch` or `os/arch[/variant]`, the way containerd's `Parse` does,
 * and normalises it. A one-word specifier takes the missing part from `defaults` (this machine).
 * Throws an Error saying what is wrong, e.g. for a comma-separated list.
 */
export function parsePlatform(specifier: string, defaults: Platform = hostPlatform()): Platform {
  const fail = (why: string): never => {
    throw new Error(`invalid platform "${specifier}": ${why}`);
  };
  if (specifier.includes(',')) {
    fail('a list of platforms needs a multi-platform build, which builder does not do yet: give one platform, e.g. linux/arm64');
  }
  if (specifier.includes('*')) fail('wildcards are not supported');
  const parts = specifier.split('/');
  if (parts.length > 3) fail('expected os/arch[/variant], e.g. linux/arm64');
  const [first = '', arch, variant] = parts;
  if (!OS_COMPONENT.test(first)) fail(first === '' ? 'the operating system is empty' : `"${first}" is not an operating system or architecture`);
  for (const part of parts.slice(1)) {
    if (!COMPONENT.test(part)) fail(part === '' ? 'a component is empty' : `"${part}" is not a valid component (letters, digits, "_", "." and "-")`);
  }
  const os = normalizePlatform({ os: first, architecture: '' }).os;
  if (arch === undefined) {
    if (KNOWN_OS.has(os)) return normalizePlatform({ os, architecture: defaults.architecture, ...(defaults.variant ? { variant: defaults.variant } : {}) });
    const [a, v] = normalizeArch(first, '');
    if (!KNOWN_ARCH.has(a)) fail('unknown operating system or architecture');
    return normalizePlatform({ os: defaults.os, architecture: a, ...(v ? { variant: v } : {}) });
  }
  return normalizePlatform({ os, architecture: arch, ...(variant !== undefined ? { variant } : {}) });
}

/**
 * A platform a caller gave, as a specifier (`linux/arm64`) or an object, normalised; an object's
 * parts are checked as a specifier's are (so `architecture: 'amd64,linux'` is refused, not
 * written into an image).
 */
export function toPlatform(value: Platform | string): Platform {
  if (typeof value === 'string') return parsePlatform(value);
  const spec = [value.os, value.architecture, ...(value.variant ? [value.variant] : [])].join('/');
  if (!value.os || !value.architecture) throw new Error(`invalid platform "${spec}": os and architecture are both needed`);
  parsePlatform(spec);
  return normalizePlatform(value);
}

/** containerd's `Format`: `os/arch[/variant]`. */
export function formatPlatform(p: Platform): string {
  if (!p.os) return 'unknown';
  return [p.os, p.architecture, p.variant].filter((part) => part).join('/');
}

/** The platform an image config declares, normalised. */
export function platformOf(config: { os: string; architecture: string; variant?: string }): Platform {
  return normalizePlatform({ os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) });
}

/**
 * What `wanted` accepts, best first: containerd's `platforms.Only` (BuildKit's matcher for
 * pulls). amd64/vN takes amd64/vN…v1, then 386; arm/vN takes arm/vN…v5; arm64/v8.x and v9.x
 * take their lower arm64 variants, then arm/v8…v5.
 */
function preference(wanted: Platform): Platform[] {
  const p = normalizePlatform(wanted);
  const same = (architecture: string, variant = ''): Platform => normalizePlatform({ os: p.os, architecture, ...(variant ? { variant } : {}) });
  const level = Number(/^v?(\d+)$/.exec(p.variant ?? '')?.[1] ?? NaN);
  switch (p.architecture) {
    case 'amd64': {
      const out = [p];
      for (let n = level - 1; n >= 1; n--) out.push(same('amd64', `v${n}`));
      return [...out, same('386')];
    }
    case 'arm': {
      const out = [p];
      for (let n = level - 1; n >= 5; n--) out.push(same('arm', `v${n}`));
      return out;
    }
    case 'arm64': {
      const versions = arm64Levels(p.variant ?? 'v8');
      if (!versions) return [];
      const out: Platform[] = [];
      for (const [major, topMinor] of versions) {
        for (let minor = topMinor; minor >= 0; minor--) out.push(same('arm64', minor === 0 ? `v${major}` : `v${major}.${minor}`));
      }
      return [...out, ...preference(same('arm', 'v8'))];
    }
    default:
      return [p];
  }
}

/**
 * The arm64 [major, highest minor] levels an arm64 variant runs, newest first (containerd's
 * table: v9.x also runs v8.0…v8.(x+5)); undefined for a variant not in it.
 */
function arm64Levels(variant: string): Array<[number, number]> | undefined {
  const m = /^v([89])(?:\.(\d))?$/.exec(variant);
  if (!m) return undefined;
  const minor = Number(m[2] ?? 0);
  if (m[1] === '8') return [[8, minor]];
  return minor <= 7 ? [[9, minor], [8, Math.min(minor + 5, 9)]] : undefined;
}

function equal(a: Platform, b: Platform): boolean {
  return a.os === b.os && a.architecture === b.architecture && (a.variant ?? '') === (b.variant ?? '');
}

/**
 * How well `candidate` serves `wanted`: 0 is the platform itself, higher is a further fallback
 * in containerd's order, undefined is not usable.
 */
export function platformRank(wanted: Platform, candidate: Platform): number | undefined {
  const c = normalizePlatform(candidate);
  const rank = preference(wanted).findIndex((p) => equal(p, c));
  return rank < 0 ? undefined : rank;
}

/**
 * The index entry for `wanted`: the best ranked, the first of equals, as containerd's
 * `LimitManifests` picks it. Attestation manifests and entries without a platform are skipped.
 */
export function selectManifest(entries: readonly Descriptor[], wanted: Platform): Descriptor | undefined {
  let best: { desc: Descriptor; rank: number } | undefined;
  for (const desc of entries) {
    if (!desc.platform || isAttestation(desc)) continue;
    const rank = platformRank(wanted, desc.platform);
    if (rank !== undefined && (!best || rank < best.rank)) best = { desc, rank };
  }
  return best?.desc;
}

/** BuildKit's attestation manifests (provenance, SBOM) sit in indexes as `unknown/unknown` entries. */
export function isAttestation(desc: Descriptor): boolean {
  return desc.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest';
}
