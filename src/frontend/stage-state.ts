// The build state of one stage (BuildKit's dispatchState): its filesystem vertex, environment,
// working dir, user, image config and history, and how a stage starts (FROM scratch, an image or
// another stage). The dispatcher changes it instruction by instruction; nothing here builds ops.

import type { Digest, Platform } from '../definition/index.js';
import { DEFAULT_PATH, type ContainerConfig, type HistoryEntry, type ImageConfigFile } from '../oci/types.js';

export type HistoryItem = HistoryEntry & { vertex?: Digest };

/** An ARG in scope in a stage, with the value it resolved to (undefined: declared, no value). */
export interface ArgValue {
  key: string;
  value?: string;
}

/** Everything a stage carries forward: what `FROM <this stage>` starts from. */
export interface StageState {
  root: Digest;
  platform: Platform;
  /** The environment of RUN steps and of variable expansion: image Env, then ENV and ARGs in order. */
  env: Map<string, string>;
  /** '' until a WORKDIR (or the base image) sets one; RUN then uses `/`. */
  workdir: string;
  user: string;
  config: ContainerConfig;
  /** The image's `author` (MAINTAINER), inherited from the base as BuildKit does. */
  author?: string;
  history: HistoryItem[];
  buildArgs: ArgValue[];
}

/**
 * Build args that RUN steps see without an ARG instruction (BuildKit's predefined proxy args);
 * kept out of the image history and the cache key unless an ARG declares them.
 */
export const PROXY_ARGS: readonly string[] = [
  'HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy',
];

/** The shell of shell-form commands when no SHELL instruction sets one. */
export function defaultShell(os: string): string[] {
  return os === 'windows' ? ['cmd', '/S', '/C'] : ['/bin/sh', '-c'];
}

/** The name of an image Env entry (`KEY=value`, or a bare `KEY`). */
export function envKey(entry: string): string {
  const eq = entry.indexOf('=');
  return eq < 0 ? entry : entry.slice(0, eq);
}

/** `record[key] = value`, also for a key such as `__proto__` that assignment would not store. */
export function setKey<T>(record: Record<string, T>, key: string, value: T): void {
  if (key === '__proto__') Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
  else record[key] = value;
}

function envMap(env: readonly string[] | undefined): Map<string, string> {
  const map = new Map<string, string>();
  for (const entry of env ?? []) {
    const eq = entry.indexOf('=');
    map.set(eq < 0 ? entry : entry.slice(0, eq), eq < 0 ? '' : entry.slice(eq + 1));
  }
  return map;
}

function ensurePath(config: ContainerConfig, os: string): void {
  if (os === 'windows') return;
  if (!(config.Env ?? []).some((e) => envKey(e) === 'PATH')) config.Env = [...(config.Env ?? []), `PATH=${DEFAULT_PATH}`];
}

/** The state of `FROM scratch`: BuildKit's emptyImage. */
export function scratchState(root: Digest, platform: Platform): StageState {
  const config: ContainerConfig = { WorkingDir: '/' };
  ensurePath(config, platform.os);
  return { root, platform, env: envMap(config.Env), workdir: '/', user: '', config, history: [], buildArgs: [] };
}

/** The state of `FROM <image>`: the image's config and history, with PATH guaranteed. */
export function imageState(root: Digest, platform: Platform, image: ImageConfigFile): StageState {
  const config: ContainerConfig = structuredClone(image.config ?? {});
  delete config.OnBuild; // triggers run in this stage (see compile.ts); they are not inherited
  ensurePath(config, platform.os);
  const history = (image.history ?? []).map((h) => ({ ...h }));
  return {
    root,
    platform,
    env: envMap(config.Env),
    workdir: config.WorkingDir ?? '',
    user: config.User ?? '',
    config,
    ...(image.author ? { author: image.author } : {}),
    history,
    buildArgs: [],
  };
}

/** The state of `FROM <stage>`: a copy of that stage's final state, without its ONBUILD triggers. */
export function stageStateFrom(base: StageState): StageState {
  const config = structuredClone(base.config);
  delete config.OnBuild;
  return {
    root: base.root,
    platform: { ...base.platform },
    env: new Map(base.env),
    workdir: base.workdir,
    user: base.user,
    config,
    ...(base.author !== undefined ? { author: base.author } : {}),
    // Entries are never changed once pushed, so they are shared: copying each one made a chain
    // of stages quadratic.
    history: [...base.history],
    buildArgs: [...base.buildArgs],
  };
}
