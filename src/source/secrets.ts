// The build's secrets (`--secret id=npmrc,src=.npmrc`, `--secret id=token,env=TOKEN`): where each
// comes from, read once before the build starts, and handed to RUN --mount=type=secret by id.
// Their bytes never leave this module except through get(): printing, logging or serialising a
// Secrets object shows the ids only.

import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { inspect } from 'node:util';
import type { SecretProvider } from '../solver/solver.js';
import { csvFields } from '../util/csv.js';
import { readRegularFile } from '../util/read-file.js';

/** A secret as the library API takes it: from a file, an environment variable, or given. */
export type SecretSpec = { id: string } & ({ src: string } | { env: string } | { value: string | Uint8Array });

/** BuildKit's limit (secretsprovider.MaxSecretSize); a larger secret fails the build. */
export const MAX_SECRET_BYTES = 500 * 1024;

/**
 * One `--secret` flag, as docker buildx reads it: CSV fields `id`, `src` (or `source`), `env` and
 * `type=file|env`, keys case-insensitive. `type=env` takes the variable's name from `src` when
 * `env` is not given; `env` wins over `src`. With neither, as BuildKit: the environment variable
 * named like the id when `env` has it, else the file named like the id.
 */
export function parseSecretFlag(value: string, env: NodeJS.ProcessEnv = process.env): SecretSpec {
  const fail = (why: string): never => {
    throw new Error(`invalid --secret "${value}": ${why}`);
  };
  let fields: string[];
  try {
    fields = csvFields(value);
  } catch (err) {
    return fail((err as Error).message);
  }
  let type: 'file' | 'env' | undefined;
  let id = '';
  let src = '';
  let envName = '';
  for (const field of fields) {
    const eq = field.indexOf('=');
    if (eq < 0) fail(`the field "${field}" must be a key=value pair`);
    const key = field.slice(0, eq).toLowerCase();
    const v = field.slice(eq + 1);
    switch (key) {
      case 'type':
        if (v !== 'file' && v !== 'env') fail(`unsupported secret type "${v}" (use file or env)`);
        type = v as 'file' | 'env';
        break;
      case 'id':
        id = v;
        break;
      case 'src':
      case 'source':
        src = v;
        break;
      case 'env':
        envName = v;
        break;
      default:
        fail(`unexpected key "${key}" in "${field}" (use id, src, env or type)`);
    }
  }
  if (type === 'env' && !envName) [envName, src] = [src, ''];
  if (!id) fail('the secret has no id (id=…)');
  if (envName) return { id, env: envName };
  if (src) return { id, src };
  return Object.hasOwn(env, id) ? { id, env: id } : { id, src: id };
}

/**
 * The secrets of one build, read when opened: a missing, unreadable or oversized source fails the
 * build before anything runs (as buildx checks them before it starts), and every step sees the
 * same bytes. An environment variable the environment does not have gives an empty secret, as in
 * BuildKit (which reads it with os.Getenv; Docker 20.10's engine takes any empty secret for a
 * missing one, BuildKit issue 3083, fixed in v0.11).
 */
export class Secrets implements SecretProvider {
  // A private field: not an own property, so neither JSON nor inspect can reach it.
  readonly #values: Map<string, Buffer>;

  private constructor(values: Map<string, Buffer>) {
    this.#values = values;
  }

  /** Reads every secret; for one id given twice, the last one counts (as buildx). */
  static async open(specs: readonly SecretSpec[], env: NodeJS.ProcessEnv = process.env): Promise<Secrets> {
    const values = new Map<string, Buffer>();
    for (const spec of specs) {
      if (!spec.id) throw new Error('a secret has no id');
      const value = await readSecret(spec, env);
      values.delete(spec.id); // the last one's place in ids()
      values.set(spec.id, value);
    }
    return new Secrets(values);
  }

  async get(id: string): Promise<Buffer | undefined> {
    const value = this.#values.get(id);
    // A copy: a caller writing into it cannot change what the next step gets.
    return value && Buffer.from(value);
  }

  /** The ids given, in order. */
  ids(): string[] {
    return [...this.#values.keys()];
  }

  toJSON(): { secrets: string[] } {
    return { secrets: this.ids() };
  }

  [inspect.custom](): string {
    return `Secrets { ids: ${inspect(this.ids())} }`;
  }

  toString(): string {
    return `Secrets(${this.ids().join(', ')})`;
  }
}

async function readSecret(spec: SecretSpec, env: NodeJS.ProcessEnv): Promise<Buffer> {
  let value: Buffer;
  // In buildx's order when more than one is given: env, then src.
  if ('env' in spec) {
    value = Buffer.from(env[spec.env] ?? '', 'utf8');
  } else if ('src' in spec) {
    const path = resolve(spec.src);
    value = await readSource(path).catch((err: NodeJS.ErrnoException) => {
      const why = READ_ERRORS[err.code ?? ''] ?? err.message.replace(/^the file is/, 'it is');
      throw new Error(`secret "${spec.id}": cannot read ${path}: ${why}`);
    });
  } else {
    value = typeof spec.value === 'string' ? Buffer.from(spec.value, 'utf8') : Buffer.from(spec.value);
  }
  if (value.length > MAX_SECRET_BYTES) {
    throw new Error(`secret "${spec.id}" is larger than ${MAX_SECRET_BYTES / 1024} KiB, the largest a build can use`);
  }
  return value;
}

/**
 * A regular file, or a pipe: `--secret id=x,src=<(vault read …)` hands over the read end of a
 * pipe (as Docker reads it), and a named pipe is read the same way. Either is read to its end,
 * no further than the size limit; a pipe nobody writes to blocks, as it does for Docker.
 */
async function readSource(path: string): Promise<Buffer> {
  const st = await stat(path);
  // Opening a socket fails (ENXIO) before readRegularFile could say what it is.
  if (st.isSocket()) throw new Error('not a regular file: it is a socket');
  if (!st.isFIFO()) return readRegularFile(path, MAX_SECRET_BYTES);
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 64 * 1024 })) {
    chunks.push(chunk as Buffer);
    length += (chunk as Buffer).length;
    if (length > MAX_SECRET_BYTES) throw new Error(`it is larger than ${MAX_SECRET_BYTES / 1024} KiB`);
  }
  return Buffer.concat(chunks, length);
}

/** Node's messages repeat the path and the syscall: these say just what is wrong. */
const READ_ERRORS: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  ENOTDIR: 'a parent of it is not a directory',
  ELOOP: 'too many levels of symbolic links',
  EISDIR: 'not a regular file: it is a directory',
};
