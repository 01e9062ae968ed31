// A copy's file selection: its sources (src/util/select.ts) narrowed by COPY --exclude.

import type { CopyAction } from '../../definition/index.js';
import { dockerignoreFilter, selectSources, type Source, type SourceFilter } from '../../util/select.js';

/**
 * Selects a copy's sources with the source's own filter (.dockerignore) and the action's
 * --exclude patterns. Exclude patterns use .dockerignore syntax and match paths relative to
 * each selected source (and the selected paths themselves).
 */
export async function selectWithExclude(
  root: string,
  action: CopyAction,
  base: SourceFilter | undefined,
): Promise<{ selected: Source[]; filter: SourceFilter | undefined }> {
  const exclude = action.exclude ?? [];
  if (exclude.length === 0) return { selected: await selectSources(root, action.src, base ?? {}), filter: base };
  const own = dockerignoreFilter(exclude);
  const first: SourceFilter = { excluded: (p) => Boolean(base?.excluded?.(p) || own?.excluded(p)), hasExceptions: Boolean(base?.hasExceptions || own?.hasExceptions) };
  const selected = await selectSources(root, action.src, first);
  const prefixed = dockerignoreFilter([
    ...exclude,
    ...selected.filter((s) => s.path !== '.').flatMap(({ path }) => exclude.map((x) => (x.startsWith('!') ? `!${path}/${x.slice(1)}` : `${path}/${x}`))),
  ]);
  const filter: SourceFilter = {
    excluded: (p) => Boolean(base?.excluded?.(p) || prefixed?.excluded(p)),
    hasExceptions: first.hasExceptions,
  };
  return { selected, filter };
}
