// RUN --mount: parsing and validation of mount specs as BuildKit's instructions/commands_runmount.go
// does (`type=cache,target=/root/.cache,sharing=locked`), and their compilation into the exec op's
// mounts with BuildKit's defaults (dockerfile2llb/convert_runmount.go, convert_secrets.go,
// convert_ssh.go). BuildKit accepts most keys on every type and ignores those a type has no use
// for; it refuses only the combinations checked here.

import type { ExecMount } from '../definition/index.js';
import { csvFields } from '../util/csv.js';
import { parseSize } from '../util/size.js';
import { cleanPath, isAbsPath, joinPath } from './paths.js';
import { suggest } from './suggest.js';

export type MountType = 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';

export interface RunMount {
  type: MountType;
  /** Path in the container as written: missing or relative ones are resolved by toExecMount. */
  target?: string;
  /** bind/cache: path in `from` (or the context); secret: the id. */
  source?: string;
  /** A stage name or index, or an image, to mount from. */
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

const TYPES: readonly MountType[] = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'];
const KEYS = ['type', 'from', 'source', 'target', 'readonly', 'readwrite', 'id', 'sharing', 'required', 'size', 'mode', 'uid', 'gid', 'env'];
const ALIASES: Record<string, string> = { src: 'source', dst: 'target', destination: 'target', ro: 'readonly', rw: 'readwrite' };
/** Keys that may stand alone, meaning `=true`. */
const FLAGS = new Set(['readonly', 'readwrite', 'required']);
const MAX_UINT32 = 0xffffffff;

/** The build arg that prefixes every cache id (BuildKit's BUILDKIT_CACHE_MOUNT_NS), keeping two projects' caches apart. */
export const CACHE_NAMESPACE_ARG = 'BUILDKIT_CACHE_MOUNT_NS';

function parseBool(key: string, value: string): boolean {
  if (value === '') return true;
  const v = value.toLowerCase();
  if (['1', 't', 'true'].includes(v)) return true;
  if (['0', 'f', 'false'].includes(v)) return false;
  throw new Error(`invalid value for ${key}: "${value}" (use true or false)`);
}

function parseNumber(key: string, value: string, radix: 8 | 10): number {
  const re = radix === 8 ? /^[0-7]+$/ : /^\d+$/;
  const n = re.test(value) ? parseInt(value, radix) : NaN;
  if (!(n <= MAX_UINT32)) throw new Error(`invalid value for ${key}: "${value}"${radix === 8 ? ' (an octal mode such as 0644)' : ' (a number)'}`);
  return n;
}

/** The fields of a spec as [key (aliases resolved), value (undefined when it has no `=`)]. */
function fieldsOf(spec: string): Array<[string, string | undefined]> {
  return csvFields(spec)
    .map((f) => f.trim())
    .filter((f) => f !== '')
    .map((f) => {
      const eq = f.indexOf('=');
      const rawKey = (eq < 0 ? f : f.slice(0, eq)).toLowerCase();
      return [ALIASES[rawKey] ?? rawKey, eq < 0 ? undefined : f.slice(eq + 1)];
    });
}

/**
 * The `from=` of a mount spec as written (before expansion), for working out which stages a
 * RUN needs before its stage is compiled. Whatever the type: BuildKit does the same.
 */
export function mountFrom(spec: string): string | undefined {
  let from: string | undefined;
  for (const [key, value] of fieldsOf(spec)) if (key === 'from' && value !== undefined) from = value;
  return from || undefined;
}

/**
 * Parses one --mount value, each value expanded with `expand` (a value holding a comma stays
 * one value, as in BuildKit); throws an Error saying what is wrong.
 */
export function parseMount(spec: string, expand: (word: string) => string = (w) => w): RunMount {
  const pairs = fieldsOf(spec);
  const typeValue = pairs.findLast(([k]) => k === 'type')?.[1];
  const type = (typeValue === undefined ? 'bind' : expand(typeValue).toLowerCase()) as MountType;
  if (!TYPES.includes(type)) {
    const hint = suggest(typeValue ?? '', TYPES);
    throw new Error(`unsupported mount type "${typeValue ?? ''}"${hint ? ` (did you mean ${hint}?)` : ` (use ${TYPES.join(', ')})`}`);
  }
  const mount: RunMount = { type, readonly: type !== 'cache' && type !== 'tmpfs' };
  for (const [key, raw] of pairs) {
    if (!KEYS.includes(key)) {
      const hint = suggest(key, [...KEYS, ...Object.keys(ALIASES)]);
      throw new Error(`unexpected key "${key}"${hint ? ` (did you mean ${hint}?)` : ` (known keys: ${KEYS.join(', ')})`}`);
    }
    if (raw === undefined && !FLAGS.has(key)) throw new Error(`invalid field "${key}": it needs a value (${key}=…)`);
    // `from` is never expanded: BuildKit refuses variables in it (the stage graph is known before).
    const value = raw === undefined || key === 'type' || key === 'from' ? (raw ?? '') : expand(raw);
    switch (key) {
      case 'type':
        break;
      case 'target':
        mount.target = value;
        break;
      case 'source':
        mount.source = value;
        break;
      case 'from':
        // `from=` (empty) is no from, as in BuildKit: the context for a bind.
        if (value) mount.from = value;
        else delete mount.from;
        break;
      case 'readonly':
        mount.readonly = parseBool(key, value);
        break;
      case 'readwrite':
        mount.readonly = !parseBool(key, value);
        break;
      case 'id':
        mount.id = value;
        break;
      case 'sharing': {
        const v = value.toLowerCase();
        if (v !== 'shared' && v !== 'private' && v !== 'locked') throw new Error(`unsupported sharing value "${value}" (use shared, private or locked)`);
        mount.sharing = v;
        break;
      }
      case 'mode':
        mount.mode = parseNumber(key, value, 8);
        break;
      case 'uid':
        mount.uid = parseNumber(key, value, 10);
        break;
      case 'gid':
        mount.gid = parseNumber(key, value, 10);
        break;
      case 'required':
        if (type !== 'secret' && type !== 'ssh') throw new Error(`unexpected key "required" for a ${type} mount (only secret and ssh mounts can be required)`);
        mount.required = parseBool(key, value);
        break;
      case 'size':
        if (type !== 'tmpfs') throw new Error(`unexpected key "size" for a ${type} mount (only a tmpfs mount has a size)`);
        mount.size = parseSize(value);
        break;
      case 'env':
        mount.env = value;
        break;
    }
  }
  validate(mount);
  return mount;
}

/** BuildKit's checks of key combinations (validateMount, dispatchSecret, dispatchSSH). */
function validate(m: RunMount): void {
  if (m.type === 'bind' || m.type === 'tmpfs') {
    for (const key of ['mode', 'uid', 'gid'] as const) {
      if (m[key] !== undefined) throw new Error(`${key} not allowed for "${m.type}" type mounts (only cache, secret and ssh mounts have an owner and mode)`);
    }
  }
  if (m.type === 'secret') {
    if (m.from !== undefined) throw new Error('secret mount should not have a from (a secret comes from the build\'s --secret, not from a stage)');
    if (m.sharing !== undefined) throw new Error('secret mount should not define sharing');
    if (!m.source && !m.target && !m.id) throw new Error('invalid secret mount: one of id, source or target is required (the id names the --secret given to the build)');
    if (m.source && m.id) throw new Error('both source and id can\'t be set on a secret mount (source is another name for the id)');
    if (m.env !== undefined && (m.env === '' || /[=\0]/.test(m.env))) throw new Error(`invalid environment variable name "${m.env}" for env`);
  }
  if (m.sharing !== undefined && m.type !== 'cache') throw new Error(`invalid cache sharing set for ${m.type} mount (sharing is for cache mounts)`);
  if (m.type === 'ssh' && m.source) throw new Error('ssh does not support source');
  // BuildKit takes the cache's source in an empty filesystem then, and fails when the step runs.
  if (m.type === 'cache' && m.source && cleanPath(`/${m.source}`) !== '/' && m.from === undefined) {
    throw new Error(`source=${m.source} needs from=<stage or image> on a cache mount (it is the path in that filesystem the new cache starts with; without from the cache starts empty)`);
  }
}

/**
 * A bind, cache or tmpfs mount's target made absolute: as BuildKit, a missing or relative target
 * is joined with the working directory, and only a target of `/` itself is refused.
 */
export function mountTarget(mount: RunMount, workdir: string): string {
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
  return cleanPath(target);
}

export interface MountContext {
  workdir: string;
  /** How many ssh mounts of the step come before this one (each has its own default socket). */
  sshIndex: number;
  /** The value of CACHE_NAMESPACE_ARG, if given. */
  cacheNamespace?: string;
  /** The vertex input index of what `from` names; the build context when undefined. */
  input(from: string | undefined): number;
}

/** One parsed mount as the exec op mounts it, with BuildKit's defaults. */
export function toExecMount(m: RunMount, ctx: MountContext): ExecMount {
  const owner = (mode: number) => ({ mode: m.mode ?? mode, uid: m.uid ?? 0, gid: m.gid ?? 0 });
  switch (m.type) {
    case 'bind':
      return { type: 'bind', target: mountTarget(m, ctx.workdir), input: ctx.input(m.from), source: cleanPath(`/${m.source ?? ''}`), readonly: m.readonly };
    case 'cache': {
      // The id defaults to the target as written, not joined with WORKDIR (BuildKit: path.Clean(target)).
      const id = m.id || cleanPath(m.target ?? '');
      const seeded = m.from !== undefined ? { input: ctx.input(m.from), source: cleanPath(`/${m.source ?? ''}`) } : {};
      return {
        type: 'cache',
        target: mountTarget(m, ctx.workdir),
        id: ctx.cacheNamespace ? `${ctx.cacheNamespace}/${id}` : id,
        sharing: m.sharing ?? 'shared',
        readonly: m.readonly,
        ...seeded,
        ...owner(0o755),
      };
    }
    case 'tmpfs':
      return { type: 'tmpfs', target: mountTarget(m, ctx.workdir), ...(m.size ? { size: m.size } : {}) };
    case 'secret': {
      // The id is `source` or `id`, else the target's file name; the file goes to the target, else
      // to /run/secrets/<id>, unless the secret is only asked for as an environment variable.
      const id = m.source || m.id || baseName(m.target ?? '');
      const target = m.target ? absolute(m.target, ctx.workdir) : m.env === undefined ? `/run/secrets/${baseName(id)}` : undefined;
      return { type: 'secret', id, ...(target ? { target } : {}), ...(m.env !== undefined ? { env: m.env } : {}), required: m.required ?? false, ...owner(0o400) };
    }
    case 'ssh':
      return {
        type: 'ssh',
        id: m.id || 'default',
        target: m.target ? absolute(m.target, ctx.workdir) : `/run/buildkit/ssh_agent.${ctx.sshIndex}`,
        required: m.required ?? false,
        ...owner(0o600),
      };
  }
}

/**
 * The order the mounts are made in, as BuildKit's: filesystems sorted by target (so a mount
 * inside another one's target lands on top of it), then secrets, then SSH sockets.
 */
export function mountOrder(mounts: readonly ExecMount[]): ExecMount[] {
  const rank = (m: ExecMount) => (m.type === 'secret' ? 1 : m.type === 'ssh' ? 2 : 0);
  return [...mounts].sort((a, b) => {
    if (rank(a) !== rank(b)) return rank(a) - rank(b);
    if (rank(a) !== 0) return 0;
    const [x, y] = [a.target ?? '', b.target ?? ''];
    return x < y ? -1 : x > y ? 1 : 0;
  });
}

function absolute(path: string, workdir: string): string {
  return isAbsPath(path) ? cleanPath(path) : joinPath('/', workdir, path);
}

function baseName(path: string): string {
  const clean = cleanPath(path);
  return clean === '/' ? '/' : (clean.split('/').pop() as string);
}
