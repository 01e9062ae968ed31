// A build's inputs on disk: the Dockerfile and the `.dockerignore` that applies to it. Shared by
// `build()` and `plan()`; the frontend itself never touches the filesystem.

import { basename, dirname, join, resolve } from 'node:path';
import type { ExtraHost, Platform, Ulimit } from '../definition/index.js';
import { parseDockerfile, parseDockerignore, type CompileOptions, type Dockerfile, type Entitlement, type ImageResolver } from '../frontend/index.js';
import { hostPlatform } from '../oci/platform.js';
import { readRegularFileSync } from '../util/read-file.js';
import { runSettings } from './run-settings.js';
import { unsupportedContext, type BuildContextSource } from './context-sources.js';
import type { NamedContexts } from './build-contexts.js';

export interface BuildInput {
  /** Absolute path of the build context. */
  context: string;
  /** The Dockerfile as the user named it (for messages). */
  dockerfileName: string;
  /** Its absolute path, however the user spelled it; undefined when its text was given (`-f -`). */
  dockerfilePath: string | undefined;
  /** Its text, for showing source lines in errors. */
  text: string;
  dockerfile: Dockerfile;
  /** `.dockerignore` patterns, parsed. */
  dockerignore: string[];
}

/**
 * `dockerfileText`: the Dockerfile itself (`-f -`), named `dockerfile` (default `Dockerfile`) in
 * messages; only the context's `.dockerignore` applies to it.
 */
export async function readBuildInput(contextDir: string, dockerfile?: string, dockerfileText?: string): Promise<BuildInput> {
  const remote = unsupportedContext(contextDir);
  if (remote) throw new Error(remote);
  const context = resolve(contextDir);
  const dockerfileName = dockerfile ?? 'Dockerfile';
  const dockerfilePath = dockerfileText === undefined ? resolve(dockerfile ?? join(context, 'Dockerfile')) : undefined;
  const text =
    dockerfileText ??
    (await readInputFile(dockerfilePath!).catch((err: NodeJS.ErrnoException) => {
      throw new Error(`failed to read Dockerfile ${dockerfileName}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
    }));
  return {
    context,
    dockerfileName,
    dockerfilePath,
    text,
    dockerfile: parseDockerfile(text, dockerfileName),
    dockerignore: parseDockerignore(await readDockerignore(dockerfilePath, context)),
  };
}


/**
 * Largest Dockerfile or `.dockerignore` read. BuildKit has no setting for it, but its frontend
 * reads the file in one gRPC message, which is capped at 16 MiB.
 */
export const MAX_INPUT_FILE_BYTES = 16 * 1024 * 1024;

/**
 * A Dockerfile or `.dockerignore`, as text (see readRegularFile). Synchronous: two small reads
 * before anything else can start, where thread-pool trips (and starting its threads, which a
 * fully cached build otherwise never needs) cost more than the reads.
 */
async function readInputFile(path: string): Promise<string> {
  return readRegularFileSync(path, MAX_INPUT_FILE_BYTES).toString('utf8');
}

/** `<Dockerfile>.dockerignore` beside the Dockerfile wins over the context's `.dockerignore`. */
export async function readDockerignore(dockerfilePath: string | undefined, context: string): Promise<string> {
  const beside = dockerfilePath === undefined ? [] : [join(dirname(dockerfilePath), `${basename(dockerfilePath)}.dockerignore`)];
  for (const candidate of [...beside, join(context, '.dockerignore')]) {
    try {
      return await readInputFile(candidate);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new Error(`failed to read ${candidate}: ${(err as Error).message}`);
    }
  }
  return '';
}

/** What is built, the frontend's input: the options `build()` and `plan()` share. */
export interface BuildDefinitionOptions {
  /** The build context directory. */
  context: string;
  /** Path of the Dockerfile; default `<context>/Dockerfile`. */
  dockerfile?: string;
  /** The Dockerfile's text instead (`-f -`); `dockerfile` then only names it in messages. */
  dockerfileText?: string;
  buildArgs?: Record<string, string>;
  /** Labels set on the image after the Dockerfile's own (`docker build --label`). */
  labels?: Record<string, string>;
  target?: string;
  /** Target platform, `linux/arm64` or as an object (default: this machine's). One: a list is refused. */
  platform?: Platform | string;
  /** Network of RUN steps that do not choose one: the host's (default) or `none`; part of their digests. */
  network?: 'none' | 'host';
  /**
   * What the Dockerfile may ask for beyond the sandbox, as BuildKit's `--allow`: `network.host`
   * for RUN --network=host, `security.insecure` for RUN --security=insecure (privileged). Without
   * it such a step fails the build (and the plan) before anything runs.
   */
  allow?: Entitlement[];
  /** Unix seconds: fixes `created` times and clamps file mtimes in layers, for reproducible images. */
  sourceDateEpoch?: number;
  /** Lines added to RUN steps' /etc/hosts (`--add-host`); their names are part of the steps' cache keys. */
  extraHosts?: ExtraHost[];
  /** Resource limits of RUN steps (`--ulimit`); part of their cache keys. */
  ulimits?: Ulimit[];
  /** Bytes of RUN steps' /dev/shm (`--shm-size`; default 64 MiB); part of their cache keys. */
  shmSize?: number;
  /**
   * Named build contexts (`--build-context`), by stage or image name: a stage of that name is
   * replaced by the context, and a FROM, COPY --from or RUN --mount from= naming it reads it.
   */
  buildContexts?: Record<string, BuildContextSource>;
}

/** `platform`: the target asked for, if any (see CompileOptions.platform). */
export function compileOptions(
  input: BuildInput,
  settings: BuildDefinitionOptions,
  platform: Platform | undefined,
  resolveImage: ImageResolver,
  namedContexts?: NamedContexts,
): CompileOptions {
  const run = runSettings(settings);
  return {
    file: input.dockerfileName,
    buildArgs: settings.buildArgs ?? {},
    ...(settings.labels ? { labels: settings.labels } : {}),
    target: settings.target,
    ...(platform ? { platform } : {}),
    // BuildKit's worker platform: RUN steps execute here whatever the target.
    buildPlatform: hostPlatform(),
    dockerignore: input.dockerignore,
    sourceDateEpoch: settings.sourceDateEpoch,
    defaultNetwork: settings.network,
    ...(settings.allow ? { allow: settings.allow } : {}),
    ...(run ? { runSettings: run } : {}),
    ...(namedContexts ? { namedContext: namedContexts.lookup } : {}),
    resolveImage,
  };
}
