// A build's inputs on disk: the Dockerfile and the `.dockerignore` that applies to it. Shared by
// `build()` and `plan()`; the frontend itself never touches the filesystem.

import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Platform } from '../definition/index.js';
import { parseDockerfile, parseDockerignore, type CompileOptions, type Dockerfile, type Entitlement, type ImageResolver } from '../frontend/index.js';
import { hostPlatform } from '../oci/platform.js';

export interface BuildInput {
  /** Absolute path of the build context. */
  context: string;
  /** The Dockerfile as the user named it (for messages). */
  dockerfileName: string;
  /** Its text, for showing source lines in errors. */
  text: string;
  dockerfile: Dockerfile;
  /** `.dockerignore` patterns, parsed. */
  dockerignore: string[];
}

export async function readBuildInput(contextDir: string, dockerfile?: string): Promise<BuildInput> {
  const context = resolve(contextDir);
  const dockerfilePath = resolve(dockerfile ?? join(context, 'Dockerfile'));
  const dockerfileName = dockerfile ?? 'Dockerfile';
  const text = await readInputFile(dockerfilePath).catch((err: NodeJS.ErrnoException) => {
    throw new Error(`failed to read Dockerfile ${dockerfileName}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  });
  return {
    context,
    dockerfileName,
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

const KINDS: Array<[(s: import('node:fs').Stats) => boolean, string]> = [
  [(s) => s.isDirectory(), 'a directory'],
  [(s) => s.isFIFO(), 'a FIFO (named pipe)'],
  [(s) => s.isSocket(), 'a socket'],
  [(s) => s.isCharacterDevice(), 'a character device'],
  [(s) => s.isBlockDevice(), 'a block device'],
];

/**
 * Reads a regular file of at most MAX_INPUT_FILE_BYTES. Opened non-blocking and checked with
 * fstat before any read: a FIFO would otherwise block the read (and the process) forever, and a
 * device could stream without end. O_NOCTTY keeps a terminal from becoming ours.
 */
async function readInputFile(path: string): Promise<string> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new Error(`not a regular file: it is ${KINDS.find(([is]) => is(st))?.[1] ?? 'a special file'}`);
    const tooBig = () => new Error(`the file is larger than ${MAX_INPUT_FILE_BYTES / 1024 / 1024} MiB`);
    if (st.size > MAX_INPUT_FILE_BYTES) throw tooBig();
    // Read one byte past the limit, in case the file grew since fstat.
    const buf = Buffer.alloc(Math.min(st.size, MAX_INPUT_FILE_BYTES) + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, length, buf.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length === buf.length) {
        if (length > MAX_INPUT_FILE_BYTES) throw tooBig();
        break;
      }
    }
    return buf.toString('utf8', 0, length);
  } finally {
    await handle.close();
  }
}

/** `<Dockerfile>.dockerignore` beside the Dockerfile wins over the context's `.dockerignore`. */
async function readDockerignore(dockerfilePath: string, context: string): Promise<string> {
  for (const candidate of [join(dirname(dockerfilePath), `${basename(dockerfilePath)}.dockerignore`), join(context, '.dockerignore')]) {
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
}

/** `platform`: the target asked for, if any (see CompileOptions.platform). */
export function compileOptions(input: BuildInput, settings: BuildDefinitionOptions, platform: Platform | undefined, resolveImage: ImageResolver): CompileOptions {
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
    resolveImage,
  };
}
