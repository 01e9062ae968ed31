// Resolves a path inside a root directory as if the root were `/`: symlinks (absolute or
// relative) are followed within the root and `..` never climbs above it. Copying into an image's
// filesystem as root must never follow one of the image's symlinks out onto the host.

import { lstat, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';

const MAX_SYMLINKS = 255;

/** The host path for `unsafePath` inside `root`; missing components are joined as they are. */
export async function secureJoin(root: string, unsafePath: string): Promise<string> {
  let pending = posix.normalize(`/${unsafePath}`).split('/').filter(Boolean);
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const candidate = join(root, ...resolved, part);
    let target: string | undefined;
    try {
      if ((await lstat(candidate)).isSymbolicLink()) target = await readlink(candidate);
    } catch {
      // does not exist (yet): the rest is taken literally
    }
    if (target === undefined) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_SYMLINKS) throw new Error(`too many levels of symbolic links in ${unsafePath}`);
    if (target.startsWith('/')) resolved.length = 0;
    pending = [...target.split('/').filter(Boolean), ...pending];
  }
  return join(root, ...resolved);
}
