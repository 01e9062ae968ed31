// builder's configuration file: the registry settings dockerd keeps in daemon.json, under the same
// names, so they can be copied across:
//
//   { "insecure-registries": ["registry.lan:5000"], "registry-mirrors": ["https://mirror.example"] }
//
// plus builder's own: `"gc": { "keepStorage": "5GB" }` (bytes, or a size as `--keep-storage` takes;
// 0 turns the collection after a build off).
//
// Looked up at BUILDER_CONFIG, else $XDG_CONFIG_HOME/builder/config.json (~/.config/...). Command
// line flags add to what the file says.

import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseSize } from '../util/size.js';

export interface BuilderConfig {
  /** Registries reached over plain HTTP (loopback ones always are). */
  insecureRegistries: string[];
  /** Pull-through mirrors tried before Docker Hub for docker.io images. */
  registryMirrors: string[];
  /** `gc.keepStorage`: bytes the state directory may hold before a build's collection prunes it; 0: never. */
  gcKeepStorage?: number;
}

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`${file}: ${reason}`);
    this.name = 'ConfigError';
  }
}

const KEYS = { 'insecure-registries': 'insecureRegistries', 'registry-mirrors': 'registryMirrors' } as const;

export function defaultConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.BUILDER_CONFIG || join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'builder', 'config.json');
}

/**
 * Reads the configuration at `path` (default: defaultConfigPath()). A missing default file is an
 * empty configuration; a file named explicitly (argument or BUILDER_CONFIG) must exist.
 */
export async function loadConfig(path?: string, env: NodeJS.ProcessEnv = process.env): Promise<BuilderConfig> {
  const file = path ?? defaultConfigPath(env);
  const explicit = path !== undefined || Boolean(env.BUILDER_CONFIG);
  let text: string;
  try {
    // Synchronous: one small file read before anything else can start (see input.ts).
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !explicit) return { insecureRegistries: [], registryMirrors: [] };
    throw new ConfigError(file, `cannot read the configuration: ${(err as Error).message}`);
  }
  return parseConfig(text, file);
}

export function parseConfig(text: string, file: string): BuilderConfig {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    const at = /at position (\d+)/.exec((err as Error).message);
    const where = at ? lineAndColumn(text, Number(at[1])) : '';
    throw new ConfigError(`${file}${where}`, `invalid JSON: ${(err as Error).message.replace(/ in JSON at position \d+.*$/, '')}`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new ConfigError(file, 'expected a JSON object');
  const config: BuilderConfig = { insecureRegistries: [], registryMirrors: [] };
  for (const [key, value] of Object.entries(data)) {
    if (key === 'gc') {
      config.gcKeepStorage = parseGc(value, file);
      continue;
    }
    if (!(key in KEYS)) throw new ConfigError(file, `unknown setting "${key}" (known: ${[...Object.keys(KEYS), 'gc'].join(', ')})`);
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v !== '')) {
      throw new ConfigError(file, `"${key}" must be a list of non-empty strings`);
    }
    config[KEYS[key as keyof typeof KEYS]] = value as string[];
  }
  return config;
}

function parseGc(value: unknown, file: string): number | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(file, '"gc" must be an object such as {"keepStorage": "5GB"}');
  let keep: number | undefined;
  for (const [key, v] of Object.entries(value)) {
    if (key !== 'keepStorage') throw new ConfigError(file, `unknown setting "gc.${key}" (known: gc.keepStorage)`);
    try {
      keep = parseKeepStorage(v, '"gc.keepStorage"');
    } catch (err) {
      throw new ConfigError(file, (err as Error).message);
    }
  }
  return keep;
}

/** A keep-storage setting: bytes as a number, or a size string (`5GB`, `512m`, `0`). */
export function parseKeepStorage(value: unknown, where: string): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  if (typeof value === 'string') {
    try {
      return parseSize(value);
    } catch (err) {
      throw new Error(`${where}: ${(err as Error).message}`);
    }
  }
  throw new Error(`${where}: expected a size such as "5GB" or a number of bytes, got ${JSON.stringify(value)}`);
}

function lineAndColumn(text: string, offset: number): string {
  const before = text.slice(0, offset).split('\n');
  return `:${before.length}:${before.at(-1)!.length + 1}`;
}
