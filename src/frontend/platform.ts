// `--platform` values: parsing and normalisation in the spirit of containerd's platforms package
// (`linux/arm64`, `linux/arm/v7`, `arm64`, aliases such as `x86_64` and `aarch64`).

import type { Platform } from '../oci/types.js';

const KNOWN_OS = new Set([
  'aix', 'android', 'darwin', 'dragonfly', 'freebsd', 'illumos', 'ios', 'js', 'linux', 'netbsd',
  'openbsd', 'plan9', 'solaris', 'wasip1', 'windows',
]);

function normalizeArch(arch: string, variant: string): { architecture: string; variant: string } {
  switch (arch) {
    case 'i386':
      return { architecture: '386', variant: '' };
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      return { architecture: 'amd64', variant: variant === 'v1' ? '' : variant };
    case 'aarch64':
    case 'arm64':
      return { architecture: 'arm64', variant: variant === '8' || variant === 'v8' ? '' : variant };
    case 'armhf':
      return { architecture: 'arm', variant: 'v7' };
    case 'armel':
      return { architecture: 'arm', variant: 'v6' };
    case 'arm': {
      const v = variant === '' || variant === '7' ? 'v7' : variant === '5' || variant === '6' || variant === '8' ? `v${variant}` : variant;
      return { architecture: 'arm', variant: v };
    }
    default:
      return { architecture: arch, variant };
  }
}

/**
 * Parses `os[/arch[/variant]]` or a bare architecture; missing parts come from `defaults`.
 * Throws an Error with a user-facing message when the value is not a platform.
 */
export function parsePlatform(value: string, defaults: Platform): Platform {
  const spec = value.trim().toLowerCase();
  if (spec === '') throw new Error('empty platform');
  const parts = spec.split('/');
  if (parts.length > 3 || parts.some((p) => !/^[a-z0-9_.-]+$/.test(p))) {
    throw new Error(`"${value}" is not a valid platform (expected os/arch[/variant], e.g. linux/arm64)`);
  }
  let os: string;
  let arch: string;
  let variant = '';
  if (parts.length === 1) {
    const only = parts[0] as string;
    if (KNOWN_OS.has(only)) {
      os = only;
      arch = defaults.architecture;
      variant = only === defaults.os ? (defaults.variant ?? '') : '';
    } else {
      os = defaults.os;
      arch = only;
    }
  } else {
    os = parts[0] as string;
    arch = parts[1] as string;
    variant = parts[2] ?? '';
  }
  if (os === 'macos') os = 'darwin';
  const n = normalizeArch(arch, variant);
  const platform: Platform = { os, architecture: n.architecture };
  if (n.variant) platform.variant = n.variant;
  return platform;
}

/** `os/arch[/variant]` */
export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter((x) => x).join('/');
}

export function samePlatform(a: Platform, b: Platform): boolean {
  return a.os === b.os && a.architecture === b.architecture && (a.variant ?? '') === (b.variant ?? '');
}
