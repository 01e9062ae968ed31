// A build's inputs on disk: the Dockerfile and the `.dockerignore` that applies to it. Shared by
// `build()` and `plan()`; the frontend itself never touches the filesystem.

import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Platform } from './definition/index.js';
import { parseDockerfile, parseDockerignore, type CompileOptions, type Dockerfile, type Entitlement, type ImageResolver } from './frontend/index.js';

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
  const text = await readFile(dockerfilePath, 'utf8').catch((err: NodeJS.ErrnoException) => {
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

/** `<Dockerfile>.dockerignore` beside the Dockerfile wins over the context's `.dockerignore`. */
async function readDockerignore(dockerfilePath: string, context: string): Promise<string> {
  for (const candidate of [join(dirname(dockerfilePath), `${basename(dockerfilePath)}.dockerignore`), join(context, '.dockerignore')]) {
    try {
      return await readFile(candidate, 'utf8');
    } catch {
      // try the next
    }
  }
  return '';
}

/** What `build()` and `plan()` both take from their options to compile the input. */
export interface CompileSettings {
  buildArgs?: Record<string, string>;
  target?: string;
  sourceDateEpoch?: number;
  network?: 'none' | 'host';
  allow?: readonly Entitlement[];
}

export function compileOptions(input: BuildInput, settings: CompileSettings, platform: Platform, resolveImage: ImageResolver): CompileOptions {
  return {
    file: input.dockerfileName,
    buildArgs: settings.buildArgs ?? {},
    target: settings.target,
    platform,
    dockerignore: input.dockerignore,
    sourceDateEpoch: settings.sourceDateEpoch,
    defaultNetwork: settings.network,
    ...(settings.allow ? { allow: settings.allow } : {}),
    resolveImage,
  };
}
