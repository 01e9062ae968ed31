// Digest helpers, the one place content addresses are computed: sha256 of bytes, the canonical
// JSON that vertex digests and cache keys are taken over, and ChainIDs of layer stacks.

import { createHash } from 'node:crypto';
import type { Digest } from './types.js';

const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;

/** `sha256:<hex>` of the bytes (a string is hashed as UTF-8). */
export function sha256(data: string | Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Whether `value` is a well-formed sha256 digest (the only algorithm this project accepts). */
export function isSha256Digest(value: string): value is Digest {
  return SHA256_DIGEST.test(value);
}

/** JSON with sorted object keys and no whitespace: the form digests are computed over. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const sorted: Record<string, unknown> = {};
      for (const k of Object.keys(v as object).sort()) sorted[k] = (v as Record<string, unknown>)[k];
      return sorted;
    }
    return v;
  });
}

/**
 * ChainIDs per the OCI image spec: ChainID(L0) = DiffID(L0),
 * ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
 */
export function chainIDs(diffIDs: readonly Digest[]): Digest[] {
  const out: Digest[] = [];
  for (const diffID of diffIDs) out.push(chainID(out.at(-1), diffID));
  return out;
}

/** The ChainID of layer `diffID` on top of the chain `parent` (none: the bottom layer). */
export function chainID(parent: string | undefined, diffID: Digest): Digest {
  return parent === undefined ? diffID : sha256(`${parent} ${diffID}`);
}
