// `builder run`, `builder ps` and `builder rm`: parse the flags as docker run/ps/rm do, call the
// library, map the outcome to docker run's exit codes.

import { constants as osConstants } from 'node:os';
import { parseArgs } from 'node:util';
import { parseVolumeFlag } from '../client/run-config.js';
import type { RunningContainer, RunOptions } from '../client/run.js';
import { ago } from './store.js';
import { table } from './table.js';

const RUN_USAGE = `Usage: builder run [OPTIONS] IMAGE [COMMAND] [ARG...]

Run a command in a new container from an image of the local store, under runc, as docker run
does: the image's ENTRYPOINT, CMD, ENV, USER and WORKDIR, overridden by the options. Exits with
the command's exit code; 125 when builder itself fails, 126 when the command cannot be invoked,
127 when it is not found. Ctrl-C (SIGINT), SIGTERM and SIGHUP go to the container's process; one
that has not exited --stop-timeout seconds later, or at a second Ctrl-C, is killed (exit 128+n).

Options:
      --rm                  Remove the container (and its writable layer) when it exits
  -i, --interactive         Attach stdin
  -t, --tty                 Give the process a pseudo-terminal (its stderr comes on stdout)
  -e, --env K=V             Set an environment variable (repeatable; K alone takes it from
                            this environment, and unsets it when it is not set here)
      --env-file FILE       Read variables from FILE: K=V lines, K alone, # comments (repeatable)
  -w, --workdir DIR         Working directory inside the container (absolute)
  -u, --user USER           user, uid, user:group or uid:gid
      --network MODE        host (default: there is no bridge) or none (loopback only)
  -v, --volume HOST:DIR[:ro]
                            Bind-mount a host file or directory (it must exist; ro: read-only)
      --entrypoint CMD      Replace the image's ENTRYPOINT (and drop its CMD); "" clears it
      --name NAME           Name the container (default: the first 12 digits of its ID)
      --stop-timeout SECS   How long a forwarded Ctrl-C or SIGTERM may take (default 10)
      --root DIR            State directory (default: $BUILDER_ROOT, /var/lib/builder as root)
  -h, --help                Show this help
`;

const PS_USAGE = `Usage: builder ps [-a] [-q] [--root DIR]

List the containers builder run is running (with -a, also those it kept after they exited).

Options:
  -a, --all                 Also exited containers
  -q, --quiet               Only their IDs
      --root DIR            State directory (default: $BUILDER_ROOT, /var/lib/builder as root)
  -h, --help                Show this help
`;

const RM_USAGE = `Usage: builder rm [--root DIR] CONTAINER...

Remove containers that builder run kept (run without --rm), with their writable layer: by name,
ID or a unique prefix of it. A running container is refused.

Options:
      --root DIR            State directory (default: $BUILDER_ROOT, /var/lib/builder as root)
  -h, --help                Show this help
`;

const RUN_OPTIONS = {
  rm: { type: 'boolean' },
  interactive: { type: 'boolean', short: 'i' },
  tty: { type: 'boolean', short: 't' },
  env: { type: 'string', short: 'e', multiple: true },
  'env-file': { type: 'string', multiple: true },
  workdir: { type: 'string', short: 'w' },
  user: { type: 'string', short: 'u' },
  network: { type: 'string' },
  volume: { type: 'string', short: 'v', multiple: true },
  entrypoint: { type: 'string' },
  name: { type: 'string' },
  'stop-timeout': { type: 'string' },
  root: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** docker run's exit code for its own failures (bad flags, no such image…). */
const OWN_FAILURE = 125;

export async function runRunCommand(args: string[]): Promise<number> {
  let opts: Omit<RunOptions, 'signal' | 'onStart'> & { stopTimeout: number };
  try {
    const parsed = parseRunArgs(args);
    if (!parsed) {
      process.stdout.write(RUN_USAGE);
      return 0;
    }
    opts = parsed;
  } catch (err) {
    process.stderr.write(`ERROR: ${(err as Error).message}\nSee 'builder run --help'.\n`);
    return OWN_FAILURE;
  }
  const { run, ContainerStartError } = await import('../client/run.js');
  const controller = new AbortController();
  let container: RunningContainer | undefined;
  let interrupted: NodeJS.Signals | undefined;
  let deadline: NodeJS.Timeout | undefined;
  // As docker run's signal proxy: the first signal goes to the container; a second one, or the
  // stop timeout, kills it. Before the container starts, a signal just stops the run.
  const onSignal = (signal: NodeJS.Signals): void => {
    if (!container || interrupted) {
      interrupted ??= signal;
      controller.abort(new Error(`run cancelled by ${signal}`));
      return;
    }
    interrupted = signal;
    process.stderr.write(`\n${signal} sent to the container; killing it in ${opts.stopTimeout}s or at the next Ctrl-C\n`);
    void container.kill(signal);
    deadline = setTimeout(() => controller.abort(new Error(`container did not stop within ${opts.stopTimeout}s`)), opts.stopTimeout * 1000);
  };
  // SIGHUP too: a terminal closed under it must not leave the container behind.
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const s of signals) process.on(s, onSignal);
  // A terminal that went away fails writes (EIO): that must not stop the clean-up.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
  try {
    const { exitCode } = await run({
      ...opts,
      onStart: (c) => (container = c),
      onWarning: (message) => process.stderr.write(`${message}\n`),
      signal: controller.signal,
    });
    return controller.signal.aborted && interrupted ? 128 + osConstants.signals[interrupted] : exitCode;
  } catch (err) {
    if (interrupted) return 128 + osConstants.signals[interrupted];
    // runc has said why the command could not start, on the container's stderr.
    if (err instanceof ContainerStartError) return err.exitCode;
    process.stderr.write(`ERROR: ${(err as Error).message}\n`);
    if (process.env.BUILDER_DEBUG) process.stderr.write(`${(err as Error).stack ?? ''}\n`);
    return OWN_FAILURE;
  } finally {
    clearTimeout(deadline);
    for (const s of signals) process.off(s, onSignal);
  }
}

function parseRunArgs(args: string[]): (Omit<RunOptions, 'signal' | 'onStart'> & { stopTimeout: number }) | undefined {
  // Options end at the image: what follows is the command, its own options included.
  const split = imageIndex(args);
  const { values: v } = parseArgs({ args: args.slice(0, split), options: RUN_OPTIONS, strict: true, allowPositionals: false });
  if (v.help) return undefined;
  const rest = args.slice(args[split] === '--' ? split + 1 : split);
  if (rest.length === 0) throw new Error('"builder run" requires at least 1 argument: the IMAGE');
  const network = v.network ?? 'host';
  if (network !== 'host' && network !== 'none') throw new Error(`invalid --network "${network}": use host or none (there is no bridge)`);
  const stopTimeout = Number(v['stop-timeout'] ?? '10');
  if (!Number.isFinite(stopTimeout) || stopTimeout < 0) throw new Error(`invalid --stop-timeout "${v['stop-timeout']}": expected seconds`);
  return {
    image: rest[0]!,
    args: rest.slice(1),
    ...(v.entrypoint !== undefined && { entrypoint: v.entrypoint }),
    env: v.env ?? [],
    envFiles: v['env-file'] ?? [],
    ...(v.workdir !== undefined && { workdir: v.workdir }),
    ...(v.user !== undefined && { user: v.user }),
    network,
    // Parsed here for a usage error; the library checks that each host path exists.
    volumes: (v.volume ?? []).map(parseVolumeFlag),
    ...(v.name !== undefined && { name: v.name }),
    remove: v.rm === true,
    tty: v.tty === true,
    ...(v.interactive && { stdin: process.stdin }),
    ...(v.root !== undefined && { root: v.root }),
    stopTimeout,
  };
}

/** Where the image is in `args`: the first word that is not an option or an option's value. */
function imageIndex(args: readonly string[]): number {
  const takesValue = (name: string): boolean => (RUN_OPTIONS as Record<string, { type: string }>)[name]?.type === 'string';
  const shortName = (c: string): string | undefined => Object.entries(RUN_OPTIONS).find(([, o]) => 'short' in o && o.short === c)?.[0];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--' || a === '-' || !a.startsWith('-')) return i;
    if (a.startsWith('--')) {
      if (!a.includes('=') && takesValue(a.slice(2))) i++;
      continue;
    }
    // A group of short options (-it); one taking a value ends it, its value attached or next.
    for (let j = 1; j < a.length; j++) {
      const name = shortName(a[j]!);
      if (name && takesValue(name)) {
        if (j === a.length - 1) i++;
        break;
      }
    }
  }
  return args.length;
}

export async function runPsCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: { all: { type: 'boolean', short: 'a' }, quiet: { type: 'boolean', short: 'q' }, root: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (v.help) {
    process.stdout.write(PS_USAGE);
    return 0;
  }
  if (positionals.length > 0) throw new Error(`"builder ps" takes no arguments (got ${positionals.join(' ')})`);
  const { listContainers } = await import('../client/containers.js');
  const list = (await listContainers({ root: v.root, all: v.all })).reverse(); // newest first, as docker ps
  if (v.quiet) {
    process.stdout.write(list.map((c) => `${c.id.slice(0, 12)}\n`).join(''));
    return 0;
  }
  const status = (c: (typeof list)[number]): string =>
    c.running ? 'Up' : c.exitCode === undefined ? 'Exited (its run was killed)' : `Exited (${c.exitCode}) ${ago(new Date(c.finished ?? c.created))}`;
  const rows = list.map((c) => [c.id.slice(0, 12), c.image, JSON.stringify(c.command.join(' ')), ago(new Date(c.created)), status(c), c.name]);
  process.stdout.write(`${table([['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'NAMES'], ...rows])}\n`);
  return 0;
}

export async function runRmCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: { root: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (v.help) {
    process.stdout.write(RM_USAGE);
    return 0;
  }
  if (positionals.length === 0) throw new Error('"builder rm" requires at least 1 argument: the CONTAINER');
  const { removeContainers } = await import('../client/containers.js');
  const removed = await removeContainers(positionals, { root: v.root, onWarning: (message) => process.stderr.write(`${message}\n`) });
  process.stdout.write(removed.map((r) => `${r}\n`).join(''));
  return 0;
}
