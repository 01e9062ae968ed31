// Platform normalisation and selection from an image index, following containerd's rules:
// arm64 means arm64/v8, arm means arm/v7, and an older variant of the same architecture is an
// acceptable fallback (arm/v7 runs arm/v6 images) but never a newer one.

import type { Descriptor, Platform } from '../oci/types.js';

const ARCH_ALIASES: Record<string, { architecture: string; variant?: string }> = {
  x86_64: { architecture: 'amd64' },
  'x86-64': { architecture: 'amd64' },
  aarch64: { architecture: 'arm64' },
  armhf: { architecture: 'arm', variant: 'v7' },
  armel: { architecture: 'arm', variant: 'v6' },
  i386: { architecture: '386' },
  i686: { architecture: '386' },
};

const DEFAULT_VARIANT: Record<string, string> = { arm64: 'v8', arm: 'v7', amd64: 'v1' };

/** Lower-cases, resolves aliases and fills in the default variant. */
export function normalisePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  const arch = p.architecture.toLowerCase();
  const alias = ARCH_ALIASES[arch];
  const architecture = alias?.architecture ?? arch;
  let variant = (p.variant ?? alias?.variant)?.toLowerCase();
  if (architecture === 'arm64' && (variant === '8' || variant === undefined)) variant = 'v8';
  if (architecture === 'arm' && /^[5-8]$/.test(variant ?? '')) variant = `v${variant}`;
  variant ??= DEFAULT_VARIANT[architecture];
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** Parses `linux/arm64/v8` (the form of `--platform`). */
export function parsePlatform(text: string): Platform {
  const [os, architecture, variant] = text.split('/');
  if (!os || !architecture) throw new Error(`invalid platform "${text}": expected os/arch[/variant]`);
  return variant ? { os, architecture, variant } : { os, architecture };
}

/** The platform of this Node process, e.g. linux/amd64. */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return normalisePlatform({ os: process.platform === 'win32' ? 'windows' : process.platform, architecture: arch[process.arch] ?? process.arch });
}

/**
 * Ranks how well `candidate` serves `wanted`: 0 is exact, higher is a worse fallback, undefined
 * is unusable.
 */
export function platformRank(wanted: Platform, candidate: Platform): number | undefined {
  const w = normalisePlatform(wanted);
  const c = normalisePlatform(candidate);
  if (w.os !== c.os || w.architecture !== c.architecture) return undefined;
  if (w.variant === c.variant) return 0;
  const wv = variantNumber(w.variant);
  const cv = variantNumber(c.variant);
  if (wv === undefined || cv === undefined || cv > wv) return undefined;
  return wv - cv;
}

/**
 * Picks the manifest for `wanted` from an index's entries, skipping attestation manifests.
 * Returns undefined when none fits.
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

export function isAttestation(desc: Descriptor): boolean {
  return desc.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest';
}

function variantNumber(variant: string | undefined): number | undefined {
  const m = /^v(\d+)$/.exec(variant ?? '');
  return m ? Number(m[1]) : undefined;
}
