// The solver's file operations, applied to mounted roots: COPY and ADD (copy.ts, with ADD's
// archive extraction in unpack.ts), a copy's file selection (select.ts), --chown owners
// (owner.ts), re-using an earlier result's unchanged files (reuse.ts), and the files and directories of mkfile/mkdir actions and RUN heredocs. They work
// on directories only: they must not know snapshots, mounts, cache keys or Dockerfile syntax.

import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CopyAction } from '../../definition/index.js';
import type { Source, SourceFilter, WalkEntry } from '../../util/select.js';
import { copySources, type Owner } from './copy.js';
import type { CopyReuse } from './reuse.js';
import { archiveKind, extractArchive } from './unpack.js';

export { makeFile, mkdirAll, writeCopiedFile, writeScripts, type Owner } from './copy.js';
export { CopyReuse } from './reuse.js';
export { resolveOwner } from './owner.js';
export { selectWithExclude } from './select.js';

/**
 * Applies a copy action's file semantics to sources already selected in `srcRoot`: COPY copies
 * them; ADD extracts each local archive into the destination directory (owned by --chown when
 * given, else as recorded in the archive) and copies the other sources.
 */
export async function copyAction(
  action: CopyAction,
  p: {
    srcRoot: string;
    sources: readonly Source[];
    filter: SourceFilter | undefined;
    destRoot: string;
    owner: Owner | undefined;
    reuse?: CopyReuse;
    /** The key's walks of these sources in `srcRoot` (see CopyParams.walks). */
    walks?: ReadonlyMap<string, Iterable<WalkEntry>>;
  },
): Promise<void> {
  const { srcRoot, sources, filter, destRoot, owner, reuse, walks } = p;
  if (!action.unpack) {
    await copySources({ srcRoot, sources, filter, destRoot, dest: action.dest, owner, chmod: action.chmod, parents: action.parents, reuse, walks });
    return;
  }
  const dest = sources.length > 1 && !action.dest.endsWith('/') ? `${action.dest}/` : action.dest;
  for (const source of sources) {
    const abs = source.path === '.' ? srcRoot : join(srcRoot, source.path);
    const kind = (await lstat(abs)).isFile() ? await archiveKind(abs) : undefined;
    if (kind) await extractArchive(abs, kind, destRoot, dest.replace(/\/+$/, '') || '/', action.chown ? owner : undefined);
    else await copySources({ srcRoot, sources: [source], filter, destRoot, dest, owner, chmod: action.chmod });
  }
}
