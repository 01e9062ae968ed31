// `--cache-to` and `--cache-from`, written as buildx writes them: `type=registry,ref=REF,mode=max`,
// `type=local,dest=DIR`, `type=local,src=DIR`, `type=inline`, or a bare REF for a registry.

import type { CacheExport } from '../exporter/cache-export.js';
import type { CacheImport } from '../source/cache-import.js';
import { csvFields } from '../util/csv.js';

export function parseCacheToFlag(value: string): CacheExport {
  const { fields, get } = cacheFields('--cache-to', value, ['type', 'ref', 'dest', 'tag', 'mode', 'compression', 'oci-mediatypes']);
  const fail = (why: string): never => {
    throw new Error(`invalid --cache-to "${value}": ${why}`);
  };
  const mode = get('mode') ?? 'min';
  if (mode !== 'min' && mode !== 'max') fail(`mode must be min or max, not "${mode}"`);
  const compression = get('compression') ?? 'gzip';
  if (compression !== 'gzip' && compression !== 'zstd' && compression !== 'uncompressed') fail(`compression must be gzip, zstd or uncompressed, not "${compression}"`);
  const common = { mode: mode as 'min' | 'max', compression: compression as 'gzip' | 'zstd' | 'uncompressed' };
  switch (fields.type) {
    case 'registry':
      return { type: 'registry', ref: get('ref') ?? fail('type=registry needs ref=REGISTRY/REPOSITORY:TAG'), ...common };
    case 'local': {
      const tag = get('tag');
      return { type: 'local', dest: get('dest') ?? fail('type=local needs dest=DIRECTORY'), ...(tag ? { tag } : {}), ...common };
    }
    case 'inline':
      if (mode === 'max') fail('an inline cache is min mode only (use type=registry for mode=max)');
      return { type: 'inline' };
    default:
      return fail(`unsupported type "${fields.type}": use registry, local or inline`);
  }
}

export function parseCacheFromFlag(value: string): CacheImport {
  const { fields, get } = cacheFields('--cache-from', value, ['type', 'ref', 'src', 'tag']);
  const fail = (why: string): never => {
    throw new Error(`invalid --cache-from "${value}": ${why}`);
  };
  switch (fields.type) {
    case 'registry':
      return { type: 'registry', ref: get('ref') ?? fail('type=registry needs ref=REGISTRY/REPOSITORY:TAG') };
    case 'local': {
      const tag = get('tag');
      return { type: 'local', src: get('src') ?? fail('type=local needs src=DIRECTORY'), ...(tag ? { tag } : {}) };
    }
    default:
      return fail(`unsupported type "${fields.type}": use registry or local (an inline cache is read with type=registry from its image)`);
  }
}

/** The key=value fields of a cache flag; a value without `=` anywhere is a registry reference. */
function cacheFields(flag: string, value: string, known: readonly string[]): { fields: Record<string, string>; get: (key: string) => string | undefined } {
  const fail = (why: string): never => {
    throw new Error(`invalid ${flag} "${value}": ${why}`);
  };
  if (value === '') fail('empty value');
  let fields: Record<string, string>;
  if (!value.includes('=')) {
    fields = { type: 'registry', ref: value };
  } else {
    let list: string[] = [];
    try {
      list = csvFields(value);
    } catch (err) {
      fail((err as Error).message);
    }
    fields = {};
    for (const field of list) {
      const eq = field.indexOf('=');
      if (eq <= 0) fail(`the field "${field}" must be a key=value pair`);
      const key = field.slice(0, eq).toLowerCase();
      if (!known.includes(key)) fail(`unknown key "${key}" (known: ${known.join(', ')})`);
      fields[key] = field.slice(eq + 1);
    }
    fields.type ??= 'registry';
  }
  return { fields, get: (key) => (fields[key] === '' ? undefined : fields[key]) };
}
