// Why a step missed the cache: its key's ingredients (src/cache/cache-index.ts KeyIngredients)
// compared with those last recorded for the same step position, naming the first input that
// differs, in one short line.
//
// "Nearest cached key" here means the key this step position had in the latest build that reached
// it (hit or miss), not the closest of all keys ever recorded: that is the build the user compares
// with in their head ("what did I change since the last build?"), it costs one small file per step,
// and it needs no similarity measure between keys (moby/buildkit#2567 weighs the same choice).

import { createHash } from 'node:crypto';
import type { KeyIngredients } from '../cache/cache-index.js';

/**
 * Most entries in a step's files list. Past it, directories are summarised: each path is cut to
 * its first d components (the deepest d that keeps the list within the bound), and a cut
 * directory (`node_modules/left-pad/`) gets one digest of everything under it. A dependency tree
 * of 50k files costs a thousand entries, and a miss still names the directory that changed. A
 * thousand entries with their digests is about 100 KB, read once per miss.
 */
export const MAX_LISTED_FILES = 1000;

/** Paths shown in a reason before "and N more". */
const SHOWN_PATHS = 3;

/** The `files` key summarising everything when even the top-level entries are too many. */
const EVERYTHING = './';

/** Collects the files a key reads (see checksumSources' onEntry), bounded by MAX_LISTED_FILES. */
export class FileList {
  // As added, in columns: most lists are never summarised (the step hit, its key recorded before),
  // so adding an entry of a large context must cost next to nothing.
  private readonly rels: string[] = [];
  private readonly kinds: string[] = [];
  private readonly contents: string[] = [];

  readonly add = (rel: string, kind: string, content: string): void => {
    this.rels.push(rel);
    this.kinds.push(kind);
    this.contents.push(content);
  };

  private summary: Pick<KeyIngredients, 'files' | 'summarised'> | undefined;

  /** The ingredients' `files` and `summarised` fields (none when nothing was read); computed once. */
  result(): Pick<KeyIngredients, 'files' | 'summarised'> {
    this.summary ??= this.summarise();
    return this.summary;
  }

  private summarise(): Pick<KeyIngredients, 'files' | 'summarised'> {
    const { rels, kinds, contents } = ascendingOnce(this.rels, this.kinds, this.contents);
    const n = rels.length;
    if (n === 0) return {};
    const short = (content: string): string => (content.startsWith('sha256:') ? content.slice(0, 'sha256:'.length + 16) : content);
    if (n <= MAX_LISTED_FILES) {
      const files: Record<string, [string, string]> = {};
      for (let i = 0; i < n; i++) files[rels[i]!] = [kinds[i]!, short(contents[i]!)];
      return { files };
    }
    let depth = 0;
    while (groupCount(rels, depth + 1) <= MAX_LISTED_FILES) depth++;
    const files: Record<string, [string, string]> = {};
    // Sorted paths keep each cut directory's entries together (see groupCount): one hash at a
    // time, fed in large pieces.
    let dir: string | undefined = depth === 0 ? EVERYTHING : undefined;
    let hash: ReturnType<typeof createHash> | undefined;
    let pending = '';
    const close = (): void => {
      if (dir !== undefined && hash) files[dir] = ['summary', `sha256:${hash.update(pending).digest('hex').slice(0, 16)}`];
      hash = undefined;
      pending = '';
    };
    for (let i = 0; i < n; i++) {
      const rel = rels[i]!;
      if (depth > 0 && !(dir !== undefined && rel.startsWith(dir))) {
        close();
        const at = cut(rel, depth);
        if (at === rel) {
          files[rel] = [kinds[i]!, short(contents[i]!)];
          dir = undefined;
          continue;
        }
        dir = at;
      }
      hash ??= createHash('sha256');
      pending += `${rel}\0${kinds[i]!}\0${short(contents[i]!)}\n`;
      if (pending.length > 65536) {
        hash.update(pending);
        pending = '';
      }
    }
    close();
    return { files, summarised: true };
  }
}

/**
 * The entries sorted by path (UTF-16 order), a path added twice counting once, as last added.
 * The walk adds a single source's paths in that order already, each once: then they are taken
 * as they are, without a map or a sort.
 */
function ascendingOnce(rels: string[], kinds: string[], contents: string[]): { rels: string[]; kinds: string[]; contents: string[] } {
  let ascending = true;
  for (let i = 1; i < rels.length && ascending; i++) ascending = rels[i - 1]! < rels[i]!;
  if (ascending) return { rels, kinds, contents };
  const last = new Map<string, number>();
  rels.forEach((rel, i) => last.set(rel, i));
  const order = [...last].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, i]) => i);
  return { rels: order.map((i) => rels[i]!), kinds: order.map((i) => kinds[i]!), contents: order.map((i) => contents[i]!) };
}

/**
 * How many distinct `cut(rel, depth)` the sorted `rels` give, counted up to one past
 * MAX_LISTED_FILES. Paths with a common prefix are neighbours once sorted, so a group starts
 * where a path does not start with the previous group's directory.
 */
function groupCount(rels: readonly string[], depth: number): number {
  let count = 0;
  let dir: string | undefined;
  for (const rel of rels) {
    if (dir !== undefined && rel.startsWith(dir)) continue;
    count++;
    if (count > MAX_LISTED_FILES) break;
    const at = cut(rel, depth);
    dir = at === rel ? undefined : at;
  }
  return count;
}

/** `rel` cut to its first `depth` (at least 1) components: `a/b/` for `a/b/c.js` at depth 2, itself when shorter. */
function cut(rel: string, depth: number): string {
  // By index, not split and join: a large context cuts every path once per depth tried.
  let slash = -1;
  for (let d = 0; d < depth; d++) {
    slash = rel.indexOf('/', slash + 1);
    if (slash < 0) return rel;
  }
  return rel.slice(0, slash + 1);
}

/** A digest of a value that may be secret (a build arg): compared, never shown. */
export function valueDigest(value: string): string {
  return `sha256:${createHash('sha256').update(value).digest('hex').slice(0, 16)}`;
}

/** What each op field is called in a reason. */
const FIELD_NAMES: Record<string, string> = {
  args: 'command',
  cwd: 'working directory',
  user: 'user',
  network: 'network',
  security: 'security mode',
  mounts: 'mounts',
  scripts: 'heredoc script',
  actions: 'instruction',
  ref: 'image reference',
  platform: 'platform',
  url: 'URL',
};

/**
 * One line saying why `current` missed. `previous` is what the same step position recorded last;
 * `reRan` says how an input step (by name) that ran in this build rather than coming from the
 * cache is described (`re-ran`, `would re-run`), undefined for one that did not run.
 */
export function explainMiss(previous: KeyIngredients | undefined, current: KeyIngredients, reRan: (step: string) => string | undefined): string {
  if (!previous) return 'no cache for this step yet';
  if (previous.key === current.key) return 'no cache for this step: its cache record was removed';
  if (previous.image !== current.image && previous.image && current.image) return `base image changed: ${short(previous.image)} → ${short(current.image)}`;
  const inputs = current.inputs ?? [];
  for (const [i, input] of inputs.entries()) {
    const before = previous.inputs?.[i];
    if (before?.key === input.key) continue;
    const what = input.role === 'parent' ? 'parent step' : 'source step';
    return `${what} ${input.name} ${reRan(input.name) ?? 'changed'}`;
  }
  const [epochBefore, epoch] = [previous.op.sourceDateEpoch, current.op.sourceDateEpoch];
  if (epochBefore !== epoch) return `SOURCE_DATE_EPOCH ${epoch === undefined ? 'unset' : epochBefore === undefined ? 'set' : 'changed'} (the layer's file times are clamped to it)`;
  const fields = new Set([...Object.keys(previous.op), ...Object.keys(current.op)]);
  for (const field of fields) {
    if (previous.op[field] !== current.op[field]) return `instruction changed (${FIELD_NAMES[field] ?? field})`;
  }
  const env = changedNames(previous.env ?? {}, current.env ?? {});
  if (env.length > 0) return `build arg or ENV ${listed(env)} changed`;
  const files = fileChanges(previous, current);
  if (files) return files;
  return 'cache key changed';
}

function changedNames(before: Record<string, string>, after: Record<string, string>): string[] {
  const names = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...names].filter((n) => before[n] !== after[n]).sort();
}

function fileChanges(previous: KeyIngredients, current: KeyIngredients): string | undefined {
  const before = previous.files ?? {};
  const after = current.files ?? {};
  if (Boolean(previous.summarised) !== Boolean(current.summarised)) return `files read changed (${Object.keys(after).length > Object.keys(before).length ? 'more' : 'fewer'} files)`;
  const changes: string[] = [];
  for (const path of [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()) {
    const [b, a] = [before[path], after[path]];
    if (!b) changes.push(`${path} added`);
    else if (!a) changes.push(`${path} removed`);
    else if (b[1] !== a[1]) changes.push(a[0] !== 'summary' ? `${path} changed` : path === EVERYTHING ? 'some of the files read changed' : `files under ${path} changed`);
    else if (b[0] !== a[0]) changes.push(`${path} ${metadataChange(b[0], a[0])}`);
  }
  if (changes.length === 0) return undefined;
  const more = changes.length - SHOWN_PATHS;
  return `${changes.slice(0, SHOWN_PATHS).join(', ')}${more > 0 ? ` and ${more} more` : ''}`;
}

/** Which of an entry's type, mode and owner (`file 644 0:0`) changed. */
function metadataChange(before: string, after: string): string {
  const [bType, bMode] = before.split(' ');
  const [aType, aMode] = after.split(' ');
  if (bType !== aType) return 'changed type';
  return bMode !== aMode ? 'mode changed' : 'owner changed';
}

function listed(names: string[]): string {
  const more = names.length - SHOWN_PATHS;
  return `${names.slice(0, SHOWN_PATHS).join(', ')}${more > 0 ? ` and ${more} more` : ''}`;
}

/** `sha256:0123456789ab`: enough to tell two digests apart in one line. */
function short(digest: string): string {
  return digest.slice(0, 'sha256:'.length + 12);
}
