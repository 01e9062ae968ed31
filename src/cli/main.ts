// `builder` command line: parses arguments, renders progress, calls the library.

import { constants as osConstants } from 'node:os';
import { parseArgs, type ParseArgsConfig } from 'node:util';
// build.js pulls in the registry client, snapshotter and executor: loaded only when building.
import type { BuildOptions, Output } from '../client/build.js';
import type { ProgressEvent } from '../progress.js';
import { loadConfig } from '../client/config.js';
import { toPlatform } from '../oci/platform.js';
import { parseSecretFlag } from '../source/secrets.js';
import { parseSshFlag } from '../source/ssh.js';
import { parseCacheFromFlag, parseCacheToFlag } from './cache-flags.js';
import { parseAddHost, parseShmSize, parseUlimit } from '../client/run-settings.js';
import { parseBuildContext, unsupportedContext, type BuildContextSource } from '../client/context-sources.js';
import { causes, exitCodeOf, UsageError } from './exit-codes.js';
import { createRenderer, formatForecast, formatWarning, PROGRESS_MODES, type ProgressMode, type Renderer } from './progress.js';
import { smallHeap } from './heap.js';
import { stderr, stdout } from './output.js';

const USAGE = `Usage: builder [--debug] build [OPTIONS] PATH
       builder pull [OPTIONS] NAME
       builder run [OPTIONS] IMAGE [COMMAND] [ARG...]
       builder ps [-a] [-q]
       builder rm CONTAINER...
       builder login [-u USER] [--password-stdin] [SERVER]
       builder logout [SERVER]
       builder doctor [--root DIR]
       builder du [--verbose] [--root DIR]
       builder prune [--all] [--keep-storage SIZE] [--filter until=DURATION] [--cache-mounts] [-f]
       builder images [-q] [--digests] [--no-trunc] [REPOSITORY[:TAG]]
       builder tag SOURCE TARGET
       builder rmi [-f] IMAGE...
       builder push NAME[:TAG]
       builder inspect IMAGE...
       builder history [--no-trunc] IMAGE
       builder save [-o FILE] IMAGE...
       builder load [-i FILE]
       builder import [-c INSTRUCTION] FILE|DIR|- [REPOSITORY[:TAG]]

Build an image from a Dockerfile and a build context, without a daemon; run it (builder run),
and more: "builder COMMAND --help" for each command. The options of builder build:

Options:
  -t, --tag NAME            Name the image (repeatable), e.g. user/app:1.2
  -f, --file FILE           Dockerfile to use (default: PATH/Dockerfile; - reads it from stdin)
      --target STAGE        Build this stage (default: the last one)
      --build-arg K=V       Set a build argument (repeatable; K alone takes it from the environment)
      --label K=V           Set a label on the image, over the Dockerfile's (repeatable)
      --build-context NAME=SOURCE
                            Give a stage or image NAME another source: a directory,
                            docker-image://REF or oci-layout://DIR[:TAG|@DIGEST] (repeatable)
      --push                Push every tag to its registry
  -o, --output SPEC         Also export (repeatable): type=oci|docker,dest=FILE.tar (docker: for
                            docker load), type=local,dest=DIR or DIR (the image's filesystem),
                            type=tar,dest=FILE (the same as a tar), type=registry (= --push),
                            type=image (the default); dest=- is stdout for oci, docker and tar
      --load                Load the image into the Docker engine (docker load) (= -o type=docker)
      --platform OS/ARCH    Target platform (default: this machine's)
      --network MODE        Network for RUN steps: host (default) or none
      --add-host HOST:IP    Add a line to RUN steps' /etc/hosts (repeatable)
      --ulimit NAME=SOFT[:HARD]
                            Resource limit of RUN steps, e.g. nofile=1024:2048 (repeatable)
      --shm-size SIZE       Size of RUN steps' /dev/shm, e.g. 256m (default: 64m)
      --allow ENTITLEMENT   Let the Dockerfile use network.host (RUN --network=host) or
                            security.insecure (RUN --security=insecure, privileged); repeatable
                            or comma-separated
      --secret SPEC         Give RUN --mount=type=secret steps a secret: id=ID,src=FILE or
                            id=ID,env=VAR (repeatable); it never enters the image or the cache
      --ssh ID[=PATHS]      Give RUN --mount=type=ssh steps an SSH agent: default (your
                            SSH_AUTH_SOCK), ID=SOCKET or ID=KEYFILE[,KEYFILE...] (repeatable)
      --cache-to SPEC       Share the build cache: type=registry,ref=REF[,mode=min|max]
                            [,compression=gzip|zstd|uncompressed], type=local,dest=DIR[,mode=…]
                            or type=inline (in the pushed image's config); repeatable
      --cache-from SPEC     Use a shared cache: type=registry,ref=REF (a cache or an image with
                            an inline cache), type=local,src=DIR, or REF; repeatable
      --dry-run             Print the stages and steps (with vertex digests) that would run; pull and run nothing
      --explain-cache       Print which steps would come from the cache and why the others would
                            not; run, pull and write nothing (with --dry-run: the same)
      --no-cache            Run every step even if it is cached
      --pull                Check the registry for newer base images
      --root DIR            State directory (default: $BUILDER_ROOT, /var/lib/builder as root)
      --snapshotter NAME    auto, overlayfs or native (default: auto)
      --compression NAME    Compression of new layers when pushed or exported: gzip (default),
                            zstd or uncompressed (stored layers stay uncompressed)
      --insecure-registry H Use plain HTTP for registry H (loopback ones always are)
      --registry-mirror URL Pull Docker Hub images through this mirror first (repeatable)
      --config FILE         Registry settings as in dockerd's daemon.json ("insecure-registries",
                            "registry-mirrors") and the GC limit ("gc": {"keepStorage": "20GB"});
                            default $BUILDER_CONFIG, else ~/.config/builder/config.json
      --progress MODE       auto (default: tty on a terminal, else plain), tty (a live view),
                            plain, json (builder's events), rawjson (BuildKit's SolveStatus) or quiet
  -q, --quiet               Print only the image ID (no progress)
      --iidfile FILE        Write the image ID (sha256:… of its config) to FILE
      --metadata-file FILE  Write the result as JSON to FILE (containerimage.digest,
                            containerimage.config.digest, containerimage.descriptor, image.name)
  -D, --debug               Print the stack trace of an error (also: BUILDER_DEBUG=1)
  -h, --help                Show this help

PATH is a directory; a tar on stdin (-), a Git repository or a URL is not supported yet.

Exit codes: 0 done; 1 the build failed (a step failed, or another error); 2 bad usage (a bad
command line, or a Dockerfile that does not parse); 3 a registry error (unreachable, refused
credentials, no such image, push refused); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
`;

/** `--debug` anywhere a command takes it, or BUILDER_DEBUG: errors come with their stack traces. */
let debug = Boolean(process.env.BUILDER_DEBUG);

export async function main(args: string[]): Promise<number> {
  // Global flags come before the command, as docker's do.
  let argv = args;
  while (argv[0] === '--debug' || argv[0] === '-D') {
    debug = true;
    argv = argv.slice(1);
  }
  const [command, ...rest] = argv;
  if (!command || command === '-h' || command === '--help' || command === 'help') {
    stdout.write(USAGE);
    return command ? 0 : 2;
  }
  if (command !== 'build' && command !== 'pull') {
    // These commands' modules write to process.stdout and process.stderr themselves.
    stdout.handOver();
    stderr.handOver();
  }
  if (command === 'login' || command === 'logout') return (await import('./login.js')).runLoginCommand(command, rest);
  if (command === 'pull') return runPull(rest);
  if (command === 'run') return (await loaded(import('./run.js'))).runRunCommand(rest);
  if (command === 'ps') return (await import('./run.js')).runPsCommand(rest);
  if (command === 'rm') return (await import('./run.js')).runRmCommand(rest);
  if (command === 'doctor') return (await import('./doctor.js')).runDoctorCommand(rest);
  if (command === 'du') return (await import('./store.js')).runDuCommand(rest);
  if (command === 'prune') return (await import('./store.js')).runPruneCommand(rest);
  if (command !== 'build') {
    const images = await loaded(import('./images.js'));
    if (images.IMAGE_COMMANDS.has(command)) return interruptible(command, undefined, (signal) => images.runImageCommand(command, rest, signal));
    throw new UsageError(`unknown command "${command}" (try: builder build --help)`);
  }
  const opts = parseBuildArgs(rest);
  if (!opts) {
    stdout.write(USAGE);
    return 0;
  }
  const { progress, dryRun, explain, quiet, config: configFile, debug: wantsDebug, ...flags } = opts;
  debug ||= wantsDebug;
  if (flags.dockerfileText === STDIN) flags.dockerfileText = await readDockerfileFromStdin();
  const buildOpts = { ...flags, ...(await registrySettings(configFile, flags)) };
  if (explain) {
    return interruptible('build', undefined, async (signal) => {
      const { explainCache } = await import('../client/build.js');
      const onProgress = (e: ProgressEvent) => (progress !== 'quiet' && e.type === 'warning' ? stderr.write(`${formatWarning(e)}\n`) : undefined);
      stdout.write(formatForecast(await explainCache({ ...buildOpts, onProgress, signal }), progress));
    });
  }
  if (dryRun) return (await import('./dry-run.js')).runDryRun(buildOpts);
  // An archive written to stdout owns it: the build's summary goes to stderr then.
  const archiveToStdout = (buildOpts.outputs ?? []).some((o) => 'dest' in o && o.dest === '-');
  if (archiveToStdout) {
    if (stdout.isTTY) throw new UsageError('--output dest=- writes a tar archive to stdout, which is a terminal: redirect it or give a file');
    // The exporter writes the archive to process.stdout.
    stdout.handOver();
  }
  const renderer = createRenderer(progress, stderr, 'Building');
  return interruptible('build', renderer, async (signal) => {
    const { build } = await loaded(import('../client/build.js'), false);
    const result = await build({ ...buildOpts, onProgress: onWork(renderer.onProgress), signal }).catch((err: unknown) => {
      renderer.end();
      throw err;
    });
    renderer.end({ names: result.tags, digest: result.manifestDigest });
    const summary = archiveToStdout ? stderr : stdout;
    if (quiet) {
      summary.write(`${result.configDigest}\n`);
      return;
    }
    for (const p of result.pushed) summary.write(`pushed ${p.ref}@${p.digest}\n`);
    for (const e of result.exported) summary.write(`exported ${e.dest} ${e.digest}\n`);
    summary.write(`${result.manifestDigest}\n`);
  });
}

/**
 * A command's modules, loaded: V8's memory settings come after them (see heap.ts). `working`:
 * the command works at once (a build only once a step runs: see onWork).
 */
async function loaded<T>(modules: Promise<T>, working = true): Promise<T> {
  const loadedModules = await modules;
  if (working) smallHeap();
  return loadedModules;
}

/** A build's progress listener, also told when the first step starts running (a cached one does not run). */
function onWork(listener: (event: ProgressEvent) => void): (event: ProgressEvent) => void {
  let working = false;
  return (event) => {
    if (!working && event.type === 'step' && event.status === 'started' && event.id !== 'export') {
      working = true;
      smallHeap();
    }
    listener(event);
  };
}

const PULL_USAGE = `Usage: builder pull [OPTIONS] NAME

Pull an image from its registry into the local store, under its name, as docker pull does.
Prints the name pinned to the manifest pulled: docker.io/library/alpine:latest@sha256:...

Options:
      --platform OS/ARCH    Which image of a multi-platform index (default: this machine's)
      --root DIR            State directory (default: $BUILDER_ROOT, /var/lib/builder as root)
      --insecure-registry H Use plain HTTP for registry H (loopback ones always are)
      --registry-mirror URL Pull Docker Hub images through this mirror first (repeatable)
      --config FILE         Registry settings, as for builder build
      --progress MODE       auto, tty, plain, json, rawjson or quiet, as for builder build
  -D, --debug               Print the stack trace of an error
  -h, --help                Show this help

Exit codes as for builder build: 0 pulled, 2 bad usage, 3 a registry error, 130 interrupted.
`;

/** Options `build` and `pull` share. */
const COMMON_OPTIONS = {
  platform: { type: 'string' },
  root: { type: 'string' },
  'insecure-registry': { type: 'string', multiple: true },
  'registry-mirror': { type: 'string', multiple: true },
  config: { type: 'string' },
  progress: { type: 'string' },
  debug: { type: 'boolean', short: 'D' },
  help: { type: 'boolean', short: 'h' },
} as const;

async function runPull(args: string[]): Promise<number> {
  const v = parseOptions(args, COMMON_OPTIONS);
  if (v.values.help) {
    stdout.write(PULL_USAGE);
    return 0;
  }
  debug ||= Boolean(v.values.debug);
  if (v.positionals.length !== 1) throw new UsageError('"builder pull" requires exactly 1 argument: the image NAME');
  const flags = { insecureRegistries: v.values['insecure-registry'], registryMirrors: v.values['registry-mirror'] };
  const pullOpts = {
    ref: v.positionals[0]!,
    platform: platformFlag(v.values.platform),
    root: v.values.root,
    ...(await registrySettings(v.values.config, flags)),
  };
  const renderer = createRenderer(progressMode(v.values.progress), stderr, 'Pulling');
  return interruptible('pull', renderer, async (signal) => {
    const { pull } = await loaded(import('../client/pull.js'));
    const result = await pull({ ...pullOpts, onProgress: renderer.onProgress, signal }).catch((err: unknown) => {
      renderer.end();
      throw err;
    });
    renderer.end({ names: [result.ref.slice(0, result.ref.lastIndexOf('@'))], digest: result.manifestDigest, pulled: true });
    stdout.write(`${result.ref}\n`);
  });
}

/** The configuration file's registry settings, plus those given as flags; and its gc setting (BUILDER_GC_KEEP_STORAGE wins). */
async function registrySettings(
  configFile: string | undefined,
  flags: { insecureRegistries?: string[] | undefined; registryMirrors?: string[] | undefined },
): Promise<{ insecureRegistries: string[]; registryMirrors: string[]; gcKeepStorage?: number }> {
  const config = await loadConfig(configFile);
  return {
    insecureRegistries: [...config.insecureRegistries, ...(flags.insecureRegistries ?? [])],
    registryMirrors: [...config.registryMirrors, ...(flags.registryMirrors ?? [])],
    ...(config.gcKeepStorage !== undefined && !process.env.BUILDER_GC_KEEP_STORAGE && { gcKeepStorage: config.gcKeepStorage }),
  };
}

/**
 * Runs `work` with an AbortSignal that the first Ctrl-C (or SIGTERM) fires. An interrupted run
 * always fails, with the shell's code for the signal (130 SIGINT, 143 SIGTERM), even when the
 * work got past its last abort check before the signal arrived. Notices go through `renderer`
 * when there is one, so that a live view does not paint over them.
 */
async function interruptible(what: string, renderer: Renderer | undefined, work: (signal: AbortSignal) => Promise<void>): Promise<number> {
  const say = (text: string) => (renderer ? renderer.say(text) : stderr.write(text));
  const controller = new AbortController();
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) {
      say('still cleaning up, please wait\n');
      return;
    }
    interrupted = signal;
    say(`\n${signal === 'SIGINT' ? 'interrupted' : 'terminated'}: stopping the ${what} and cleaning up\n`);
    controller.abort(new Error(`${what} cancelled by ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const exitCode = (): number | undefined => (interrupted ? 128 + osConstants.signals[interrupted] : undefined);
  try {
    await work(controller.signal);
    return exitCode() ?? 0;
  } catch (err) {
    const code = exitCode();
    if (code !== undefined) return code;
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function parseOptions<T extends ParseArgsConfig['options']>(args: string[], options: T) {
  return usage(() => parseArgs({ args, allowPositionals: true, options, strict: true }));
}

function progressMode(text: string | undefined): ProgressMode {
  const mode = text ?? 'auto';
  if (!(PROGRESS_MODES as readonly string[]).includes(mode)) throw new UsageError(`invalid --progress "${mode}": use ${PROGRESS_MODES.join(', ')}`);
  return mode as ProgressMode;
}

function parseBuildArgs(
  args: string[],
): (Omit<BuildOptions, 'onProgress' | 'signal'> & { progress: ProgressMode; dryRun: boolean; explain: boolean; quiet: boolean; config?: string; debug: boolean }) | undefined {
  const parsed = parseOptions(args, {
    tag: { type: 'string', short: 't', multiple: true },
    file: { type: 'string', short: 'f' },
    target: { type: 'string' },
    'build-arg': { type: 'string', multiple: true },
    label: { type: 'string', multiple: true },
    push: { type: 'boolean' },
    load: { type: 'boolean' },
    output: { type: 'string', short: 'o', multiple: true },
    network: { type: 'string' },
    allow: { type: 'string', multiple: true },
    'no-cache': { type: 'boolean' },
    pull: { type: 'boolean' },
    snapshotter: { type: 'string' },
    compression: { type: 'string' },
    'dry-run': { type: 'boolean' },
    'explain-cache': { type: 'boolean' },
    secret: { type: 'string', multiple: true },
    ssh: { type: 'string', multiple: true },
    'cache-to': { type: 'string', multiple: true },
    'cache-from': { type: 'string', multiple: true },
    'build-context': { type: 'string', multiple: true },
    'add-host': { type: 'string', multiple: true },
    ulimit: { type: 'string', multiple: true },
    'shm-size': { type: 'string' },
    iidfile: { type: 'string' },
    'metadata-file': { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
    ...COMMON_OPTIONS,
  });
  const v = parsed.values;
  if (v.help) return undefined;
  if (parsed.positionals.length !== 1) throw new UsageError('"builder build" requires exactly 1 argument: the build context PATH');
  const remote = unsupportedContext(parsed.positionals[0]!);
  if (remote) throw new UsageError(remote);

  const buildArgs: Record<string, string> = {};
  for (const kv of v['build-arg'] ?? []) {
    const eq = kv.indexOf('=');
    if (eq === 0) throw new UsageError(`invalid --build-arg "${kv}": missing name`);
    if (eq > 0) buildArgs[kv.slice(0, eq)] = kv.slice(eq + 1);
    else if (process.env[kv] !== undefined) buildArgs[kv] = process.env[kv]!;
  }
  const labels: Record<string, string> = {};
  for (const kv of v.label ?? []) {
    const eq = kv.indexOf('=');
    if (eq === 0) throw new UsageError(`invalid --label "${kv}": missing name`);
    // As docker: a name alone is a label with an empty value.
    labels[eq < 0 ? kv : kv.slice(0, eq)] = eq < 0 ? '' : kv.slice(eq + 1);
  }
  // As docker build -q: no progress, only the image ID on stdout.
  const progress = v.quiet ? 'quiet' : progressMode(v.progress);
  const snapshotter = v.snapshotter ?? 'auto';
  if (snapshotter !== 'auto' && snapshotter !== 'overlayfs' && snapshotter !== 'native') {
    throw new UsageError(`invalid --snapshotter "${snapshotter}": use auto, overlayfs or native`);
  }
  const compression = v.compression ?? 'gzip';
  if (compression !== 'gzip' && compression !== 'zstd' && compression !== 'uncompressed') {
    throw new UsageError(`invalid --compression "${compression}": use gzip, zstd or uncompressed`);
  }
  const network = v.network ?? 'host';
  if (network !== 'host' && network !== 'none') throw new UsageError(`invalid --network "${network}": use host or none`);
  const allow: Array<'network.host' | 'security.insecure'> = [];
  for (const item of (v.allow ?? []).flatMap((a) => a.split(','))) {
    const name = item.trim();
    if (name !== 'network.host' && name !== 'security.insecure') throw new UsageError(`invalid --allow "${name}": use network.host or security.insecure`);
    if (!allow.includes(name)) allow.push(name);
  }
  const secrets = (v.secret ?? []).map((value) => usage(() => parseSecretFlag(value)));
  const ssh = (v.ssh ?? []).map((value) => usage(() => parseSshFlag(value)));
  const cacheTo = (v['cache-to'] ?? []).map((value) => usage(() => parseCacheToFlag(value)));
  const cacheFrom = (v['cache-from'] ?? []).map((value) => usage(() => parseCacheFromFlag(value)));
  const epoch = process.env.SOURCE_DATE_EPOCH;
  if (epoch !== undefined && !/^\d+$/.test(epoch)) throw new UsageError(`invalid SOURCE_DATE_EPOCH "${epoch}": expected Unix seconds`);
  const logLimit = process.env.BUILDKIT_STEP_LOG_MAX_SIZE;
  if (logLimit !== undefined && !/^-?\d+$/.test(logLimit)) throw new UsageError(`invalid BUILDKIT_STEP_LOG_MAX_SIZE "${logLimit}": expected bytes (-1: no limit)`);

  return {
    context: parsed.positionals[0]!,
    // `-f -`: the Dockerfile is read from stdin (once the flags are all checked).
    ...(v.file === '-' ? { dockerfile: 'stdin', dockerfileText: STDIN } : { dockerfile: v.file }),
    buildContexts: buildContexts(v['build-context'] ?? []),
    extraHosts: (v['add-host'] ?? []).map((value) => usage(() => parseAddHost(value))),
    ulimits: (v.ulimit ?? []).map((value) => usage(() => parseUlimit(value))),
    ...(v['shm-size'] !== undefined ? { shmSize: usage(() => parseShmSize(v['shm-size']!)) } : {}),
    iidFile: v.iidfile,
    metadataFile: v['metadata-file'],
    quiet: Boolean(v.quiet),
    tags: v.tag,
    buildArgs,
    labels,
    target: v.target,
    push: v.push,
    // As docker build: the image is always named in the local store, whatever else it is exported to.
    outputs: [{ type: 'image' }, ...(v.output ?? []).map(parseOutput), ...(v.load ? [{ type: 'docker' } as const] : [])],
    platform: platformFlag(v.platform),
    network,
    allow,
    secrets,
    ssh,
    cacheTo,
    cacheFrom,
    noCache: v['no-cache'],
    pull: v.pull,
    root: v.root,
    snapshotter,
    compression,
    insecureRegistries: v['insecure-registry'],
    registryMirrors: v['registry-mirror'],
    sourceDateEpoch: epoch === undefined ? undefined : Number(epoch),
    stepLogLimit: logLimit === undefined ? undefined : Number(logLimit),
    progress,
    dryRun: Boolean(v['dry-run']),
    explain: Boolean(v['explain-cache']),
    config: v.config,
    debug: Boolean(v.debug),
  };
}

/** `--build-context NAME=SOURCE` flags by name; a name given twice is refused. */
function buildContexts(values: string[]): Record<string, BuildContextSource> {
  const contexts: Record<string, BuildContextSource> = {};
  for (const value of values) {
    const { name, source } = usage(() => parseBuildContext(value));
    if (Object.hasOwn(contexts, name)) throw new UsageError(`--build-context ${name} is given twice`);
    contexts[name] = source;
  }
  return contexts;
}

/** Stands for the Dockerfile text until stdin is read (`-f -`). */
const STDIN = '\u0000stdin';

/** `-f -`: the Dockerfile from stdin, bounded as one read from a file. */
async function readDockerfileFromStdin(): Promise<string> {
  const { MAX_INPUT_FILE_BYTES } = await import('../client/input.js');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_INPUT_FILE_BYTES) throw new UsageError(`-f -: the Dockerfile on stdin is larger than ${MAX_INPUT_FILE_BYTES} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** `--platform`, checked here: a bad value is a usage error. */
function platformFlag(value: string | undefined): string | undefined {
  if (value !== undefined) usage(() => toPlatform(value));
  return value;
}

/** `parse()`, its error a usage error. */
function usage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** BuildKit's `--output` forms: `type=T[,dest=D]`, or a bare directory (`-o out` = type=local,dest=out). */
function parseOutput(spec: string): Output {
  if (!spec.includes('=')) return spec === '-' ? { type: 'tar', dest: '-' } : { type: 'local', dest: spec };
  const fields: Record<string, string> = {};
  for (const kv of spec.split(',')) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new UsageError(`invalid --output "${spec}": "${kv}" is not KEY=VALUE`);
    fields[kv.slice(0, eq).trim()] = kv.slice(eq + 1);
  }
  const { type, dest, ...rest } = fields;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) throw new UsageError(`invalid --output "${spec}": unsupported field ${unknown.join(', ')}`);
  switch (type) {
    case 'image':
    case 'registry':
      if (dest !== undefined) throw new UsageError(`invalid --output "${spec}": type=${type} takes no dest`);
      return { type };
    case 'docker':
      return dest === undefined ? { type } : { type, dest };
    case 'oci':
    case 'tar':
    case 'local':
      if (!dest) throw new UsageError(`invalid --output "${spec}": type=${type} needs dest=${type === 'local' ? 'DIR' : 'FILE'}`);
      if (type === 'local' && dest === '-') throw new UsageError(`invalid --output "${spec}": type=local writes a directory, not stdout (use type=tar,dest=-)`);
      return { type, dest };
    default:
      throw new UsageError(`invalid --output "${spec}": type must be image, registry, oci, docker, local or tar`);
  }
}

/**
 * Prints an error the way a person can act on it, and returns its exit code (exit-codes.ts).
 * Stack traces (of the error and its causes) only with --debug.
 */
function report(err: unknown): number {
  const e = err as Error & { format?: () => string };
  const tail = ((e.cause ?? e) as { outputTail?: readonly string[] }).outputTail;
  const text = typeof e.format === 'function' ? e.format() : (e?.message ?? String(err));
  if (tail?.length) stderr.write(`------\n${tail.map((l) => ` > ${l}`).join('\n')}\n------\n`);
  stderr.write(`ERROR: ${text}\n`);
  if (debug) {
    for (const cause of causes(err)) stderr.write(`${(cause as Error)?.stack ?? String(cause)}\n`);
  }
  return exitCodeOf(err);
}

main(process.argv.slice(2)).then(exit, (err: unknown) => exit(report(err)));

/** Exits once stdout and stderr are flushed: writes through a stream to a pipe are asynchronous, and a reader would lose the last lines. */
async function exit(code: number): Promise<never> {
  await Promise.all([stdout.flushed(), stderr.flushed()]);
  process.exit(code);
}
