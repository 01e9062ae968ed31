// What a container started by `builder run` gets, from the image's config and the options given,
// with docker run's rules: the command line (ENTRYPOINT, CMD, --entrypoint, arguments), the
// environment (image ENV, --env-file, -e), and `-v` bind mounts.

import type { ContainerConfig } from '../oci/types.js';

/** A host directory or file seen inside the container (`-v HOST:CONTAINER[:ro]`). */
export interface Volume {
  /** Path on the host; must exist (relative: from the current directory). */
  source: string;
  /** Absolute path in the container. */
  target: string;
  readonly?: boolean;
}

/** Something wrong with what `builder run` was asked: docker's exit code 125, as for its own errors. */
export class RunConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunConfigError';
  }
}

/**
 * The process's arguments, as docker run makes them: `entrypoint` (given, even empty) replaces
 * the image's ENTRYPOINT and drops its CMD; `args` replace CMD.
 */
export function commandLine(config: ContainerConfig, entrypoint: string | undefined, args: readonly string[]): string[] {
  let head = config.Entrypoint ?? [];
  let tail = config.Cmd ?? [];
  if (entrypoint !== undefined) {
    head = entrypoint === '' ? [] : [entrypoint];
    tail = [];
  }
  if (args.length > 0) tail = [...args];
  const line = [...head, ...tail];
  if (line.length === 0) throw new RunConfigError('no command specified: the image has no ENTRYPOINT or CMD, and none was given');
  return line;
}

/**
 * The image's environment with `overrides` applied in order, as docker merges `--env-file` and
 * `-e`: `K=V` sets K, a bare `K` takes K from `host` (this process's environment) or, when it is
 * not set there, removes K.
 */
export function mergeEnv(image: readonly string[], overrides: readonly string[], host: NodeJS.ProcessEnv = process.env): string[] {
  const env = new Map<string, string>();
  for (const e of image) env.set(nameOf(e), e);
  for (const e of overrides) {
    const name = nameOf(e);
    if (name === '') throw new RunConfigError(`invalid environment variable "${e}": missing name`);
    if (e.includes('=')) env.set(name, e);
    else if (host[name] !== undefined) env.set(name, `${name}=${host[name]}`);
    else env.delete(name);
  }
  return [...env.values()];
}

/**
 * The variables of an env file, in docker's format: one `K=V` a line (the value as written,
 * spaces kept), `K` alone takes K from `host` when set there (else the line is skipped), blank
 * lines and lines starting with `#` are ignored.
 */
export function parseEnvFile(text: string, file: string, host: NodeJS.ProcessEnv = process.env): string[] {
  const out: string[] = [];
  for (const [i, raw] of text.replace(/^\uFEFF/, '').split('\n').entries()) {
    const line = raw.replace(/\r$/, '').trimStart();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    const name = eq < 0 ? line : line.slice(0, eq);
    const where = `${file}, line ${i + 1}`;
    if (name === '') throw new RunConfigError(`${where}: no variable name before "="`);
    if (/\s/.test(name)) throw new RunConfigError(`${where}: variable name "${name}" contains whitespace`);
    if (eq >= 0) out.push(line);
    else if (host[name] !== undefined) out.push(`${name}=${host[name]}`);
  }
  return out;
}

/** `-v HOST:CONTAINER[:ro|rw]`, as docker run reads a bind mount (named volumes are not supported). */
export function parseVolumeFlag(text: string): Volume {
  const parts = text.split(':');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) {
    throw new RunConfigError(`invalid volume "${text}": expected HOST-PATH:CONTAINER-PATH[:ro]`);
  }
  const [source, target, mode] = parts as [string, string, string | undefined];
  if (!source.startsWith('/') && !source.startsWith('.')) {
    throw new RunConfigError(`invalid volume "${text}": named volumes are not supported; give a host path (absolute, or starting with ./)`);
  }
  if (!target.startsWith('/')) throw new RunConfigError(`invalid volume "${text}": the container path "${target}" must be absolute`);
  if (mode !== undefined && mode !== 'ro' && mode !== 'rw') throw new RunConfigError(`invalid volume "${text}": unknown mode "${mode}" (use ro or rw)`);
  return { source, target, readonly: mode === 'ro' };
}

function nameOf(entry: string): string {
  const eq = entry.indexOf('=');
  return eq < 0 ? entry : entry.slice(0, eq);
}
