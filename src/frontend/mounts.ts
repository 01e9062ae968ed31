// RUN --mount: parsing and validation of mount specs as BuildKit's instructions/commands_runmount.go
// does (`type=cache,target=/root/.cache,sharing=locked`). The result is plain data; the solver
// decides what it can run.

import { csvFields } from '../util/csv.js';
import { cleanPath, isAbsPath, joinPath } from './paths.js';

export type MountType = 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';

export interface RunMount {
  type: MountType;
  /**
   * Path in the container. For secret/ssh a default is derived when missing; for the others a
   * missing or relative one is relative to the working directory (see resolveMountTarget).
   */
  target?: string;
  /** bind/cache: path in `from` (or the context). */
  source?: string;
  /** bind/cache: a stage name or image to mount from. */
  from?: string;
  readonly: boolean;
  /** cache/secret/ssh. */
  id?: string;
  sharing?: 'shared' | 'private' | 'locked';
  mode?: number;
  uid?: number;
  gid?: number;
  /** secret/ssh: fail when not provided (default false). */
  required?: boolean;
  /** tmpfs: bytes. */
  size?: number;
  /** secret: expose as this environment variable. */
  env?: string;
}

const KEYS: Record<MountType, readonly string[]> = {
  bind: ['type', 'target', 'source', 'from', 'readonly', 'readwrite'],
  cache: ['type', 'target', 'source', 'from', 'readonly', 'readwrite', 'id', 'sharing', 'mode', 'uid', 'gid'],
  tmpfs: ['type', 'target', 'size'],
  secret: ['type', 'target', 'id', 'required', 'mode', 'uid', 'gid', 'env'],
  ssh: ['type', 'target', 'id', 'required', 'mode', 'uid', 'gid'],
};

const ALIASES: Record<string, string> = { dst: 'target', destination: 'target', src: 'source', ro: 'readonly', rw: 'readwrite' };

function parseBool(key: string, value: string | undefined): boolean {
  if (value === undefined || value === '') return true;
  const v = value.toLowerCase();
  if (['1', 't', 'true'].includes(v)) return true;
  if (['0', 'f', 'false'].includes(v)) return false;
  throw new Error(`invalid value for ${key}: "${value}" (use true or false)`);
}

function parseNumber(key: string, value: string, radix: 8 | 10): number {
  const re = radix === 8 ? /^[0-7]+$/ : /^\d+$/;
  if (!re.test(value)) throw new Error(`invalid value for ${key}: "${value}"${radix === 8 ? ' (an octal mode such as 0644)' : ' (a number)'}`);
  return parseInt(value, radix);
}

function parseSize(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(value.trim());
  if (!m) throw new Error(`invalid value for size: "${value}" (e.g. 64m)`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[(m[2] ?? '').toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(m[1]) * mult);
}

/** Parses one --mount value; throws an Error saying what is wrong. */
export function parseMount(spec: string): RunMount {
  const fields = csvFields(spec).map((f) => f.trim()).filter((f) => f !== '');
  const pairs: Array<[string, string | undefined]> = fields.map((f) => {
    const eq = f.indexOf('=');
    const rawKey = (eq < 0 ? f : f.slice(0, eq)).toLowerCase();
    return [ALIASES[rawKey] ?? rawKey, eq < 0 ? undefined : f.slice(eq + 1)];
  });
  const typeValue = pairs.find(([k]) => k === 'type')?.[1] ?? 'bind';
  if (!(typeValue in KEYS)) throw new Error(`unsupported mount type "${typeValue}" (use bind, cache, tmpfs, secret or ssh)`);
  const type = typeValue as MountType;
  const mount: RunMount = { type, readonly: type === 'bind' };
  for (const [key, value] of pairs) {
    if (!KEYS[type].includes(key)) {
      throw new Error(`unexpected key "${key}" for a ${type} mount (allowed: ${KEYS[type].join(', ')})`);
    }
    const needValue = (): string => {
      if (value === undefined) throw new Error(`invalid field "${key}": it needs a value (${key}=…)`);
      return value;
    };
    switch (key) {
      case 'type':
        break;
      case 'target':
        mount.target = needValue();
        break;
      case 'source':
        mount.source = needValue();
        break;
      case 'from':
        mount.from = needValue();
        break;
      case 'readonly':
        mount.readonly = parseBool(key, value);
        break;
      case 'readwrite':
        mount.readonly = !parseBool(key, value);
        break;
      case 'id':
        mount.id = needValue();
        break;
      case 'sharing': {
        const v = needValue().toLowerCase();
        if (v !== 'shared' && v !== 'private' && v !== 'locked') throw new Error(`unsupported sharing value "${value}" (use shared, private or locked)`);
        mount.sharing = v;
        break;
      }
      case 'mode':
        mount.mode = parseNumber(key, needValue(), 8);
        break;
      case 'uid':
        mount.uid = parseNumber(key, needValue(), 10);
        break;
      case 'gid':
        mount.gid = parseNumber(key, needValue(), 10);
        break;
      case 'required':
        mount.required = parseBool(key, value);
        break;
      case 'size':
        mount.size = parseSize(needValue());
        break;
      case 'env':
        mount.env = needValue();
        break;
    }
  }
  if (type === 'secret' || type === 'ssh') {
    if (type === 'secret' && !mount.id && !mount.target && !mount.env) throw new Error('a secret mount needs an id or a target');
    if (type === 'secret' && !mount.target && !mount.env) mount.target = `/run/secrets/${mount.id ?? ''}`;
    if (type === 'ssh' && !mount.target) mount.target = '/run/buildkit/ssh_agent.0';
  }
  if (type === 'cache' && mount.sharing === undefined) mount.sharing = 'shared';
  return mount;
}

/**
 * A bind, cache or tmpfs mount with its target made absolute: as BuildKit, a missing or relative
 * target is joined with the working directory, and only a target of `/` itself is refused.
 */
export function resolveMountTarget(mount: RunMount, workdir: string): RunMount {
  if (mount.type === 'secret' || mount.type === 'ssh') return mount;
  const written = mount.target ?? '';
  const target = isAbsPath(cleanPath(written)) ? written : joinPath('/', workdir, written);
  if (target === '/') {
    const why = isAbsPath(written)
      ? ''
      : written
        ? ` (the relative target "${written}" is resolved against the working directory ${workdir})`
        : ' (a mount without a target is mounted at the working directory, which is /)';
    throw new Error(`invalid mount target "/"${why}`);
  }
  return { ...mount, target };
}
