// `builder du` and `builder prune`: print what the state directory holds and what pruning freed.

import { createInterface } from 'node:readline/promises';
import { parseArgs } from 'node:util';
import { UsageError } from './exit-codes.js';
import { humanSize, parseDuration, parseSize } from '../util/size.js';
import { table } from './table.js';

const DU_USAGE = `Usage: builder du [--verbose] [--root DIR]

Show the state directory's disk usage by kind: images (the blobs their names reach), layers and
other blobs (by what keeps them: an image, only the cache, or nothing), cache records, snapshots
and cache mounts; and what "builder prune" and "builder prune --all" would free.

Options:
  -v, --verbose             Also list every entry: kind, id, size, last use, what keeps it
      --root DIR            State directory (default: $BUILDER_ROOT, /var/lib/builder as root)
  -h, --help                Show this help
`;

const PRUNE_USAGE = `Usage: builder prune [OPTIONS]

Remove build cache the images in the local store do not need: cache records and the layers only
they name, snapshots, and blobs nothing names, least recently used first. Images keep everything
their names reach. Waits for a build running on the same state directory.

Options:
  -a, --all                 Also what images share (cache records of their layers, the snapshots
                            of their layers) and cache mounts
      --keep-storage SIZE   Stop once the state directory holds at most SIZE (e.g. 5GB, 512m)
      --filter until=DUR    Only what was last used more than DUR ago (e.g. 24h, 2h30m)
      --cache-mounts        Also RUN --mount=type=cache directories no build holds
  -f, --force               Do not ask for confirmation
      --root DIR            State directory (default: $BUILDER_ROOT, /var/lib/builder as root)
  -h, --help                Show this help
`;

export async function runDuCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: { verbose: { type: 'boolean', short: 'v' }, root: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(DU_USAGE);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`"builder du" takes no arguments (got ${positionals.join(' ')})`);
  const { du } = await import('../client/du.js');
  const u = await du({ root: values.root });
  const out: string[] = [];
  if (values.verbose) {
    out.push(table([['KIND', 'ID', 'SIZE', 'LAST USED', 'KEPT BY'], ...u.entries.map((e) => [e.kind, e.id, humanSize(e.size), ago(e.lastUsed), e.usedBy])]), '');
  }
  const b = u.blobs;
  out.push(
    table([
      ['TYPE', 'COUNT', 'SIZE', ''],
      ['Images', String(u.images.count), humanSize(u.images.size), 'unique bytes their names reach'],
      ['Layers & blobs', String(b.count), humanSize(b.size), `image ${humanSize(b.image)}, cache only ${humanSize(b.cacheOnly)}, unreferenced ${humanSize(b.unreferenced)}`],
      ['Cache records', String(u.cacheRecords), '', ''],
      ['Snapshots', String(u.snapshots.count), humanSize(u.snapshots.size), ''],
      ['Cache mounts', String(u.cacheMounts.count), humanSize(u.cacheMounts.size), ''],
    ]),
    '',
    `Total:\t\t${humanSize(u.total)}`,
    `Reclaimable:\t${humanSize(u.reclaimable.prune)} (builder prune), ${humanSize(u.reclaimable.all)} (builder prune --all)`,
  );
  process.stdout.write(`${out.join('\n')}\n`);
  return 0;
}

export async function runPruneCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      all: { type: 'boolean', short: 'a' },
      'keep-storage': { type: 'string' },
      filter: { type: 'string', multiple: true },
      'cache-mounts': { type: 'boolean' },
      force: { type: 'boolean', short: 'f' },
      root: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(PRUNE_USAGE);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`"builder prune" takes no arguments (got ${positionals.join(' ')})`);
  const keepStorage = values['keep-storage'] === undefined ? undefined : flag('--keep-storage', () => parseSize(values['keep-storage']!));
  let until: number | undefined;
  for (const f of values.filter ?? []) {
    const eq = f.indexOf('=');
    const key = eq < 0 ? f : f.slice(0, eq);
    if (key !== 'until') throw new UsageError(`invalid --filter "${f}": the only filter is until=DURATION (e.g. until=24h)`);
    if (until !== undefined) throw new UsageError('"until" filter expects only one value');
    until = flag('--filter until', () => parseDuration(f.slice(eq + 1)));
  }
  if (!values.force && !(await confirm(values.all ? 'WARNING! This will remove all build cache.' : 'WARNING! This will remove all dangling build cache.'))) return 1;
  const { prune } = await import('../client/prune.js');
  const result = await prune({
    root: values.root,
    all: values.all,
    cacheMounts: values['cache-mounts'],
    keepStorage,
    until,
    onWait: (message) => process.stderr.write(`${message}\n`),
  });
  if (result.removed.length > 0) {
    process.stdout.write(`${table([['KIND', 'ID', 'SIZE', 'LAST USED'], ...result.removed.map((e) => [e.kind, e.id, humanSize(e.size), ago(e.lastUsed)])])}\n`);
  }
  process.stdout.write(`Total:\t${humanSize(result.freed)}\n`);
  return 0;
}

function flag<T>(name: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new UsageError(`invalid ${name}: ${(err as Error).message}`);
  }
}

/** Asks on the terminal; anything but y or yes (or no terminal at all) is no, as docker's prompt. */
async function confirm(warning: string): Promise<boolean> {
  if (!process.stdin.isTTY) {
    process.stderr.write(`${warning} Not confirmed (no terminal): use -f to prune without asking.\n`);
    return false;
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(`${warning} Are you sure you want to continue? [y/N] `)).trim());
  } finally {
    rl.close();
  }
}

/** How long ago, as docker prints it (go-units HumanDuration, short). */
export function ago(when: Date): string {
  const s = Math.max(0, (Date.now() - when.getTime()) / 1000);
  if (s < 60) return `${Math.round(s)} seconds ago`;
  if (s < 3600) return `${Math.round(s / 60)} minutes ago`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} hours ago`;
  return `${Math.round(s / 86400)} days ago`;
}
