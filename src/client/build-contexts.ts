// Named build contexts (`--build-context NAME=SOURCE`, BuildKit's `context:NAME`) made ready for a
// build: a stage, a FROM, a COPY --from or a RUN --mount from= of that name reads the directory
// or image instead.

import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Digest } from '../definition/index.js';
import { parseDockerignore, type NamedContext } from '../frontend/index.js';
import { isSha256Digest } from '../oci/digest.js';
import { parseReference } from '../registry/reference.js';
import { readDockerignore } from './input.js';
import type { BuildContextSource } from './context-sources.js';

/**
 * The name a context is found by, as BuildKit's: an image name in its familiar form without
 * `:latest` (`docker.io/library/alpine:latest` and `alpine` are the same), a stage name as is.
 */
function contextKey(name: string): string | undefined {
  try {
    return parseReference(name).familiarString.replace(/:latest$/, '');
  } catch {
    return undefined;
  }
}

/** The named contexts of a build, ready for the frontend (`lookup`) and the solver (`localDirs`). */
export interface NamedContexts {
  lookup(name: string): NamedContext | undefined;
  /** Local source name → directory, besides the build context. */
  localDirs: Record<string, string>;
}

/**
 * Checks every named context (a directory must be one; a layout's image is found) and reads the
 * directories' `.dockerignore`. `pinLayout` gives the manifest digest of a layout's image (a
 * build copies it into the content store first).
 */
export async function openNamedContexts(
  contexts: Record<string, BuildContextSource>,
  pinLayout: (path: string, pick: { tag: string } | { digest: Digest }) => Promise<Digest>,
): Promise<NamedContexts> {
  const byKey = new Map<string, NamedContext>();
  const localDirs: Record<string, string> = {};
  for (const [name, source] of Object.entries(contexts)) {
    const key = contextKey(name);
    const fail = (why: string): never => {
      throw new Error(`--build-context ${name}: ${why}`);
    };
    if (key === undefined) fail('not a valid name (use a stage name or an image name, lower case)');
    if (byKey.has(key!)) fail(`given twice (as ${key})`);
    switch (source.type) {
      case 'local': {
        const dir = resolve(source.path);
        const st = await stat(dir).catch(() => undefined);
        if (!st?.isDirectory()) fail(`${source.path} is not a directory`);
        const local = `context:${key}`;
        localDirs[local] = dir;
        byKey.set(key!, { type: 'local', name: local, exclude: parseDockerignore(await readDockerignore(undefined, dir)) });
        break;
      }
      case 'image':
        try {
          parseReference(source.ref);
        } catch (err) {
          fail(`docker-image://${source.ref}: ${(err as Error).message}`);
        }
        byKey.set(key!, { type: 'image', ref: source.ref });
        break;
      case 'oci-layout': {
        if (source.digest !== undefined && !isSha256Digest(source.digest)) fail(`oci-layout: "${source.digest}" is not a sha256 digest`);
        const pick = source.digest !== undefined ? { digest: source.digest } : { tag: source.tag ?? 'latest' };
        const digest = await pinLayout(resolve(source.path), pick).catch((err: Error) => fail(err.message));
        // A name no registry answers to: the image is in the content store already.
        byKey.set(key!, { type: 'image', ref: `oci-layout.invalid/${key!.replace(/[:@].*$/, '')}@${digest}` });
        break;
      }
    }
  }
  return { lookup: (name) => byKey.get(contextKey(name) ?? ''), localDirs };
}
