// The executor: running one process in a temporary container through runc, for RUN steps and
// `builder run`. It owns the bundle and its config.json (spec.ts, seccomp.ts), mounts, the user
// (user.ts), env, network, stdio, signals and cleanup; it is handed a root filesystem and must
// not know where it came from (snapshots, layers) nor anything of Dockerfile syntax.
//
// This file runs one step: it writes a bundle (config.json plus the generated /etc files, and
// what RUN --mount needs: see mounts.ts), `runc run`s it in the foreground with stdio piped to
// the caller, and always removes the bundle and the container afterwards.

import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants as fsc, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { readFile, readdir, rmdir, unlink } from 'node:fs/promises';
import { constants as osc, tmpdir } from 'node:os';
import { dirname, join, posix, resolve } from 'node:path';
import type { Duplex, Readable, Writable } from 'node:stream';
import { ReadStream } from 'node:tty';
import type { ExtraHost, Ulimit } from '../definition/index.js';
import { isMountPoint, sealedCopy, unmountAll } from '../snapshotter/mount.js';
import { CommandError, lineSafe, runCommand } from '../util/command.js';
import { isOwnerAlive, processToken } from '../util/process.js';
import { resolveComponents, resolveInRootSync } from '../util/scoped-path.js';
import { RuncLauncher, type PassedFile, type StartedProcess } from './launcher.js';
import { hasSecrets, mountMemoryBundle, prepareMounts, type PreparedMounts } from './mounts.js';
import { compiledSeccomp, LOADER_IN_CONTAINER, type CompiledSeccomp } from './seccomp-filter.js';
import { buildSpec, capabilitiesInMask, hostsFile, resolvConf, withDefaultEnv, type OciRuntimeSpec } from './spec.js';
import { resolveUser } from './user.js';

export interface RunSpec {
  /** The container's root filesystem: a mounted snapshot (written to by the step). */
  rootfs: string;
  args: string[];
  env: string[];
  cwd: string;
  /** Docker USER syntax: '', name, uid, name:group, uid:gid. */
  user: string;
  network: 'none' | 'host';
  /** `insecure` runs the process privileged (RUN --security=insecure); default `sandbox`. */
  security?: 'sandbox' | 'insecure';
  hostname?: string;
  /** Mounted over the root filesystem for this run only (RUN --mount), in order. */
  mounts?: ContainerMount[];
  /**
   * `K=V` variables added to `env` for this run only (secrets exposed as env): never written to
   * a disk, logged or reported.
   */
  secretEnv?: string[];
  /** Lines added to /etc/hosts. */
  extraHosts?: ExtraHost[];
  /** Resource limits of the process. */
  ulimits?: Ulimit[];
  /** Bytes of /dev/shm (default 64 MiB, as Docker). */
  shmSize?: number;
  stdout(chunk: Buffer): void;
  stderr(chunk: Buffer): void;
  signal?: AbortSignal;
}

/** A RunSpec attached to the caller as `builder run` is: streams in and out, a terminal, signals. */
export interface ContainerSpec extends Omit<RunSpec, 'stdout' | 'stderr'> {
  stdout: Output;
  stderr: Output;
  /**
   * What the process reads (`builder run -i`); without it, nothing (/dev/null). A terminal
   * (a tty.ReadStream) is handed over as it is, so that raw mode and its window size reach the container.
   */
  stdin?: Readable;
  /**
   * Give the process a pseudo-terminal as stdin, stdout and stderr (`builder run -t`); its output
   * all comes on `stdout`. Needs util-linux's `script`, which gives runc the terminal it wants.
   */
  terminal?: boolean;
  /** List the primary group among the supplementary ones too, as docker run does (BuildKit's RUN does not). */
  primaryGroupInGroups?: boolean;
  /** Told when the container is being started, with a way to send its process a signal (Ctrl-C forwarded). */
  onStart?(kill: (signal: NodeJS.Signals) => Promise<void>): void;
}

/** Where a stream of the process goes: a function given each chunk, or a stream written with backpressure. */
export type Output = ((chunk: Buffer) => void) | Writable;

/**
 * Something the container sees besides its root filesystem. A target missing from the root
 * filesystem is created for the run and removed afterwards, so it never shows in a layer.
 */
export type ContainerMount =
  /** A host file or directory (a snapshot, a cache directory); `readonly` as a read-only bind. */
  | { type: 'bind'; target: string; source: string; readonly: boolean }
  /** An empty tmpfs; `size` in bytes. */
  | { type: 'tmpfs'; target: string; size?: number }
  /** A file holding `data`, kept in memory on the host (never on a disk), with this mode and owner. */
  | { type: 'secret'; target: string; data: Buffer; mode: number; uid: number; gid: number }
  /** A unix socket with this mode and owner; each connection to it is forwarded to `agent`. */
  | { type: 'ssh'; target: string; agent: AgentConnector; mode: number; uid: number; gid: number };

/** Opens connections to an SSH agent: a socket on the host, or an agent served in this process. */
export interface AgentConnector {
  connect(): Duplex;
}

export interface RunResult {
  exitCode: number;
  /** Set when the exit code is 128+n for a signal n (how runc reports a killed process). */
  signal?: string;
}

export interface RuncExecutorOptions {
  /** The runc binary (default: `runc` from PATH). */
  runc?: string;
  /** runc's state directory (`--root`); default: runc's own default, /run/runc for root. */
  stateRoot?: string;
  /** Where bundles are written (default: <tmpdir>/builder-runc). */
  bundleRoot?: string;
  /** Hostname when a RunSpec has none (default: buildkitsandbox, as BuildKit). */
  hostname?: string;
  /** Where the compiled seccomp profile is kept (see seccomp-filter.ts; default: the user's cache). */
  seccompCacheDir?: string;
  /** false: runc compiles the seccomp profile at every container start (no seccomp loader). */
  seccompLoader?: boolean;
}

export class AbortError extends Error {
  readonly code = 'ABORT_ERR';
  constructor(options?: { cause?: unknown }) {
    super('The operation was aborted', options);
    this.name = 'AbortError';
  }
}

/** The working directory cannot be used (e.g. it is inside /proc). */
export class WorkdirError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WorkdirError';
  }
}

/** runc itself failed (bad config, missing executable...), as opposed to the process exiting non-zero. */
export class RuncError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RuncError';
  }
}

const CONTAINER_PREFIX = 'builder-';
/** runc's state directory when run as root without `--root`. */
const DEFAULT_STATE_ROOT = '/run/runc';
const OWNER_ANNOTATION = 'dev.builder.owner';

/** Mount points runc creates in the rootfs when missing; removed again so they do not end up in layers. */
const MOUNT_TARGETS = ['/proc', '/dev', '/sys', '/etc/hosts', '/etc/resolv.conf', '/etc/hostname'];

export class RuncExecutor {
  private readonly runc: string;
  private readonly stateRoot: string | undefined;
  private readonly bundleRoot: string;
  private readonly hostname: string;
  private readonly launcher: Launcher;
  private readonly seccompCacheDir: string | undefined;
  private readonly seccompLoader: boolean;

  constructor(opts: RuncExecutorOptions = {}) {
    this.runc = opts.runc ?? 'runc';
    this.launcher = Launcher.for(this.runc);
    this.stateRoot = opts.stateRoot;
    this.bundleRoot = resolve(opts.bundleRoot ?? join(tmpdir(), 'builder-runc'));
    this.hostname = opts.hostname ?? 'buildkitsandbox';
    this.seccompCacheDir = opts.seccompCacheDir;
    this.seccompLoader = opts.seccompLoader !== false;
  }

  /**
   * Told that a RUN step will start a container soon (the solver says so before it pulls or
   * unpacks the step's base image): the spare that will start runc is made now, while this
   * process is small.
   * Forked later from a process grown by a pull, its copy of our pages is briefly counted twice
   * by anything that sums the tree's resident memory, and the fork itself takes longer.
   */
  willRun(): void {
    this.launcher.warm();
  }

  async run(spec: RunSpec | ContainerSpec): Promise<RunResult> {
    if (spec.signal?.aborted) throw new AbortError({ cause: spec.signal.reason });
    const id = `${CONTAINER_PREFIX}${randomBytes(8).toString('hex')}`;
    const rootfs = resolve(spec.rootfs);
    const user = await resolveUser(rootfs, spec.user);
    if ('primaryGroupInGroups' in spec && spec.primaryGroupInGroups && !user.additionalGids.includes(user.gid)) user.additionalGids.unshift(user.gid);
    const cwd = posix.resolve('/', spec.cwd || '/');
    // Inside the container /proc is procfs: a working directory like /proc/self/fd/N would be
    // one of runc's own (host) file descriptors (CVE-2024-21626). Refused, as is anything that
    // resolves (through symlinks in the image) into /proc/<pid>/.
    const inRoot = resolveComponents(rootfs, cwd);
    if (inRoot[0] === 'proc' && inRoot.length > 1) {
      throw new WorkdirError(`working directory ${cwd}${inRoot.join('/') !== cwd.slice(1) ? ` (resolves to /${inRoot.join('/')})` : ''} is inside /proc, which the container's procfs covers: refused`);
    }
    // Like Docker, a missing working directory is created (inside the rootfs, never through it)
    // and stays: it is part of the step's result, unlike the mount points recorded next.
    mkdirSync(join(rootfs, ...inRoot), { recursive: true, mode: 0o755 });
    const mounts = spec.mounts ?? [];
    const stubs = MountStubs.record(rootfs, [...MOUNT_TARGETS, ...mounts.map((m) => m.target)]);
    const bundle = join(this.bundleRoot, id);
    const inMemory = hasSecrets(mounts, spec.secretEnv ?? []);
    let prepared: PreparedMounts | undefined;
    let aborted = false;
    try {
      const written = await this.writeBundle(bundle, rootfs, cwd, user, spec, inMemory);
      prepared = written.prepared;
      const exit = await this.runContainer(id, bundle, spec, written.seccomp);
      aborted = exit.aborted;
      if (aborted) throw new AbortError({ cause: spec.signal?.reason });
      if (exit.code === null) throw new RuncError(`runc was killed by ${exit.signal ?? 'a signal'}`);
      if (exit.code !== 0) {
        const failure = (written.seccomp && loaderFailure(bundle)) || (await runcFailure(join(bundle, 'runc.log')));
        if (failure) throw new RuncError(failure);
      }
      return toResult(exit.code);
    } finally {
      await this.deleteContainer(id, aborted);
      await prepared?.close();
      // The stubs' rmdirs (slow on overlayfs) go to the thread pool, together; meanwhile this
      // thread unlinks the bundle's few small files, which costs less than the round trips would.
      const stubsRemoved = stubs.cleanup();
      try {
        await removeBundle(bundle, inMemory);
      } finally {
        await stubsRemoved;
      }
    }
  }

  /**
   * Deletes `builder-*` containers and bundles left by earlier runs that died (their owner
   * process is gone). Returns the ids of the containers deleted.
   */
  async sweep(): Promise<string[]> {
    const { containers, bundles } = await this.leftovers();
    for (const c of containers) {
      await runCommand(this.runc, [...this.rootArgs(), 'kill', c.id, 'KILL']).catch(() => undefined);
      await runCommand(this.runc, [...this.rootArgs(), 'delete', '--force', c.id]);
    }
    for (const bundle of bundles) await removeBundle(bundle, await isMountPoint(bundle));
    return containers.map((c) => c.id);
  }

  /** What sweep() would delete: containers (with bundles in bundleRoot) and bundle dirs of runs whose owner process is gone. */
  async leftovers(): Promise<{ containers: Array<{ id: string; bundle: string }>; bundles: string[] }> {
    let out = '';
    try {
      if (await this.mayHaveContainers()) out = await runCommand(this.runc, [...this.rootArgs(), 'list', '--format', 'json']);
    } catch (err) {
      // Without runc there is nothing to sweep (and builds without RUN steps still work).
      if (err instanceof CommandError && err.spawnError === 'ENOENT') return { containers: [], bundles: [] };
      throw err;
    }
    const listed = (JSON.parse(out.trim() || 'null') as Array<{ id: string; bundle: string; annotations?: Record<string, string> }> | null) ?? [];
    const containers: Array<{ id: string; bundle: string }> = [];
    const live = new Set<string>();
    for (const c of listed) {
      // Builds on other state directories share runc's root: their containers are theirs to sweep.
      if (!c.id.startsWith(CONTAINER_PREFIX) || !c.bundle.startsWith(`${this.bundleRoot}/`)) continue;
      const owner = c.annotations?.[OWNER_ANNOTATION];
      if (owner !== undefined && isOwnerAlive(owner)) live.add(c.id);
      else containers.push({ id: c.id, bundle: c.bundle });
    }
    const bundles: string[] = [];
    for (const name of await readdir(this.bundleRoot).catch(() => [] as string[])) {
      if (!name.startsWith(CONTAINER_PREFIX) || live.has(name)) continue;
      const owner = await bundleOwner(join(this.bundleRoot, name));
      if (owner === undefined || !isOwnerAlive(owner)) bundles.push(join(this.bundleRoot, name));
    }
    return { containers, bundles };
  }

  // --- internals -----------------------------------------------------------------------------

  private rootArgs(): string[] {
    return this.stateRoot ? ['--root', this.stateRoot] : [];
  }

  /** runc's state directory: `--root`, else runc's default for root (rootless runc has its own). */
  private stateDir(): string | undefined {
    return this.stateRoot ?? (process.getuid?.() === 0 ? DEFAULT_STATE_ROOT : undefined);
  }

  /**
   * False when runc's state directory holds no `builder-*` container: every build starts with a
   * sweep, and `runc list` costs a process start where one directory read tells as much.
   */
  private async mayHaveContainers(): Promise<boolean> {
    const dir = this.stateDir();
    if (dir === undefined) return true;
    try {
      return (await readdir(dir)).some((name) => name.startsWith(CONTAINER_PREFIX));
    } catch (err) {
      return (err as NodeJS.ErrnoException).code !== 'ENOENT';
    }
  }

  private async writeBundle(
    bundle: string,
    rootfs: string,
    cwd: string,
    user: Awaited<ReturnType<typeof resolveUser>>,
    spec: ContainerSpec,
    inMemory: boolean,
  ): Promise<{ prepared: PreparedMounts; seccomp?: CompiledSeccomp }> {
    // Synchronous: a few small files, where thread-pool round trips cost more than the writes.
    mkdirSync(this.bundleRoot, { recursive: true, mode: 0o700 });
    mkdirSync(bundle, { mode: 0o700 });
    if (inMemory) await mountMemoryBundle(bundle, spec.mounts ?? [], spec.secretEnv ?? []);
    const hostname = spec.hostname ?? this.hostname;
    const etcFiles = { hosts: join(bundle, 'hosts'), resolvConf: join(bundle, 'resolv.conf'), hostname: join(bundle, 'hostname') };
    let hostResolv = '';
    try {
      hostResolv = readFileSync('/etc/resolv.conf', 'utf8');
    } catch {
      // none on the host: an empty one
    }
    writeFileSync(etcFiles.hosts, hostsFile(hostname, spec.extraHosts), { mode: 0o644 });
    writeFileSync(etcFiles.resolvConf, resolvConf(hostResolv, spec.network), { mode: 0o644 });
    writeFileSync(etcFiles.hostname, `${hostname}\n`, { mode: 0o644 });
    const prepared = await prepareMounts(bundle, spec.mounts ?? []);
    const config = buildSpec({
      rootfs,
      args: spec.args,
      // Appended, as BuildKit appends secret env to the step's.
      env: withDefaultEnv([...spec.env, ...(spec.secretEnv ?? [])], user.home),
      cwd,
      user,
      hostname,
      network: spec.network,
      ...(spec.security === 'insecure' ? { security: 'insecure' as const, hostCapabilities: ownCapabilities() } : {}),
      etcFiles,
      mounts: prepared.mounts,
      ...(spec.ulimits ? { ulimits: spec.ulimits } : {}),
      ...(spec.shmSize !== undefined ? { shmSize: spec.shmSize } : {}),
      annotations: { [OWNER_ANNOTATION]: processToken() },
      ...(spec.terminal ? { terminal: true } : {}),
    });
    let seccomp: CompiledSeccomp | undefined;
    try {
      seccomp = await this.compiledSeccomp(config, spec);
      if (seccomp) {
        // The loader installs the compiled filter and execs the command (see seccomp-filter.ts).
        delete config.linux.seccomp;
        config.process.args = [LOADER_IN_CONTAINER, ...config.process.args];
      }
      writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
    } catch (err) {
      await prepared.close();
      throw err;
    }
    return { prepared, ...(seccomp ? { seccomp } : {}) };
  }

  /**
   * The step's seccomp profile compiled ahead (see seccomp-filter.ts), when its container starts
   * through the launcher (which passes the loader and the program as files) and with
   * no_new_privs, which lets the loader install a filter as any user.
   */
  private async compiledSeccomp(config: OciRuntimeSpec, spec: ContainerSpec): Promise<CompiledSeccomp | undefined> {
    const runc = this.seccompLoader ? this.launcher.passesFiles() : undefined;
    if (!runc || !config.linux.seccomp || !config.process.noNewPrivileges || isAttached(spec)) return undefined;
    return compiledSeccomp(config.linux.seccomp, {
      runc,
      rootArgs: this.rootArgs(),
      bundleRoot: this.bundleRoot,
      ...(this.seccompCacheDir ? { cacheDir: this.seccompCacheDir } : {}),
      containerId: () => `${CONTAINER_PREFIX}${randomBytes(8).toString('hex')}`,
      annotations: { [OWNER_ANNOTATION]: processToken() },
      removeContainer: (id) => this.deleteContainer(id, false),
    });
  }

  /** `runc run` in the foreground; on abort, kills the container and waits for runc to exit. */
  private runContainer(id: string, bundle: string, spec: ContainerSpec, seccomp: CompiledSeccomp | undefined): Promise<{ code: number | null; signal: string | null; aborted: boolean }> {
    return new Promise((resolvePromise, reject) => {
      // With the seccomp loader: fd 3 the loader, 4 the program, 5 where it reports a start failure.
      const files: PassedFile[] = seccomp ? [{ path: seccomp.loader }, { path: seccomp.filter }, { path: join(bundle, LOADER_REPORT), write: true }] : [];
      const passFds = files.length ? ['--preserve-fds', String(files.length)] : [];
      const args = [...this.rootArgs(), '--log', join(bundle, 'runc.log'), '--log-format', 'json', 'run', '--bundle', bundle, ...passFds, id];
      const inputFd = spec.stdin instanceof ReadStream ? (spec.stdin as ReadStream & { fd: number }).fd : undefined;
      // runc in the foreground wants a terminal of its own to hand a pseudo-terminal to the
      // container: `script` runs it in one (and sets the caller's terminal raw, as docker -t does).
      const [command, commandArgs] = spec.terminal
        ? ['script', ['--quiet', '--return', '--echo', 'never', '--command', [this.runc, ...args].map(shellQuote).join(' '), '/dev/null']]
        : [this.runc, args];
      // A RUN step (no input, no terminal) starts through the launcher or a spare (see Launcher).
      const attached = isAttached(spec);
      const child: StartedProcess & { stdin?: Writable | null } =
        (attached ? undefined : this.launcher.launch(args, files)) ??
        spawnWithFiles(files, (fds) =>
          spawn(attached ? command : this.launcher.executable() ?? command, commandArgs, {
            // Without -i, a terminal's input stays open and silent, as docker's.
            stdio: [inputFd ?? (attached ? 'pipe' : 'ignore'), 'pipe', 'pipe', ...fds],
            ...(spec.terminal ? { env: { ...process.env, SHELL: '/bin/sh' } } : {}),
          }) as ChildProcess & StartedProcess,
        );
      if (!attached) this.launcher.started();
      let aborted = false;
      let exited = false;
      if (child.stdin) {
        child.stdin.on('error', () => undefined); // the process did not read it all
        if (inputFd === undefined) spec.stdin?.pipe(child.stdin);
      }
      attach(child.stdout, spec.stdout);
      attach(child.stderr, spec.stderr);
      spec.onStart?.(async (signal) => void (await this.signalContainer(id, signal, () => exited)));
      const onAbort = (): void => {
        if (aborted) return;
        aborted = true;
        void this.killContainer(id, () => exited, () => child.kill('SIGKILL'));
      };
      spec.signal?.addEventListener('abort', onAbort, { once: true });
      child.on('error', (err) => {
        exited = true;
        spec.signal?.removeEventListener('abort', onAbort);
        reject(err);
      });
      child.on('close', (code, signal) => {
        exited = true;
        if (child.stdin && inputFd === undefined) spec.stdin?.unpipe(child.stdin);
        spec.signal?.removeEventListener('abort', onAbort);
        resolvePromise({ code, signal, aborted });
      });
      if (spec.signal?.aborted) onAbort();
    });
  }

  /**
   * `runc kill` fails until runc has created the container: retry while `runc run` is alive.
   * As a last resort kill runc itself (the container is then deleted with --force).
   */
  private async killContainer(id: string, exited: () => boolean, killRunc: () => void): Promise<void> {
    if (!(await this.signalContainer(id, 'SIGKILL', exited)) && !exited()) killRunc();
  }

  /** Sends the container's process `signal` (retrying until runc has created it); false if it never could. */
  private async signalContainer(id: string, signal: NodeJS.Signals, exited: () => boolean): Promise<boolean> {
    for (let i = 0; i < 200 && !exited(); i++) {
      try {
        await runCommand(this.runc, [...this.rootArgs(), 'kill', id, signal]);
        return true;
      } catch {
        await new Promise((r) => setTimeout(r, 25));
      }
    }
    return false;
  }

  /** `runc run` removes its container when it exits normally; make sure of it otherwise. */
  private async deleteContainer(id: string, force: boolean): Promise<void> {
    const stateDir = join(this.stateRoot ?? DEFAULT_STATE_ROOT, id);
    // A stat of a tmpfs path: synchronous, as a thread-pool round trip here delays the next step.
    const exists = existsSync(stateDir);
    if (exists || force) await runCommand(this.runc, [...this.rootArgs(), 'delete', '--force', id]).catch(() => undefined);
  }

}

/**
 * Starts `runc run` for RUN steps without forking node at each step: through the long-lived
 * launcher (see launcher.ts), else through a spare `/bin/sh` made ahead of time, which reads the
 * command line on its stdin and execs it with its stdout and stderr (pipes to us) as they are.
 * Node spawns by forking itself, which blocks this thread until the child has exec'd: 5-15 ms a
 * step here, more under load. The spare is forked while the previous step's container runs and
 * this thread would wait anyway; what it becomes is the same process (its pid is runc's, kill and
 * exit status are runc's), in our process group as a spawned runc is.
 */
class Launcher {
  private static readonly byCommand = new Map<string, Launcher>();
  private spare: ChildProcessByStdio<Writable, Readable, Readable> | undefined;
  /** runc's absolute path; undefined when it cannot be found (then spawn reports it as usual). */
  private resolved: string | undefined | null = null;
  private sealing: Promise<void> | undefined;
  private sealed: string | undefined;
  private launches = 0;

  private constructor(private readonly command: string) {}

  /** One launcher (one spare at most) per runc command in this process. */
  static for(command: string): Launcher {
    let launcher = Launcher.byCommand.get(command);
    if (!launcher) Launcher.byCommand.set(command, (launcher = new Launcher(command)));
    return launcher;
  }

  /**
   * Gets ready for a container: a spare now, and runc's sealed copy (see sealedCopy) for this and
   * later runs once it is made; until then runc starts from its file.
   */
  warm(): void {
    const runc = this.runcPath();
    const server = runc ? RuncLauncher.get() : undefined;
    if (server) server.warm();
    else this.prepare();
    if (runc && !this.sealing) this.sealing = sealedCopy(runc).then((path) => void (this.sealed = path));
  }

  /** What to exec as runc: its sealed copy when made, else undefined (the command as given). */
  executable(): string | undefined {
    return this.sealed;
  }

  /** runc's absolute path, when the launcher can start it with files (see PassedFile); else undefined. */
  passesFiles(): string | undefined {
    const runc = this.runcPath();
    return runc && RuncLauncher.get()?.usable() ? runc : undefined;
  }

  /**
   * runc started with `args` (and `files` as its fds 3…) by the launcher, or the spare turned into
   * it; undefined when neither is ready (a spare cannot take files).
   */
  launch(args: string[], files: readonly PassedFile[] = []): StartedProcess | undefined {
    const runc = this.runcPath();
    if (runc === undefined) return undefined;
    const server = RuncLauncher.get();
    // Once started by warm() or for a second container: a process that runs one container alone
    // (`builder run`) would only wait for the launcher's own start.
    const useServer = server && (files.length > 0 || server.running() || this.launches > 0);
    const launched = useServer ? server.launch(this.sealed ?? runc, args, files) : undefined;
    if (launched || files.length > 0) return launched;
    const child = this.spare;
    this.spare = undefined;
    if (!child || child.pid === undefined || child.exitCode !== null || child.signalCode !== null || child.stdin.destroyed) {
      child?.kill();
      return undefined;
    }
    if (!lineSafe([this.sealed ?? runc, ...args])) {
      child.kill();
      return undefined;
    }
    child.ref();
    for (const s of [child.stdin, child.stdout, child.stderr] as Array<{ ref?(): void }>) s.ref?.();
    child.stdin.end([String(args.length + 1), this.sealed ?? runc, ...args, ''].join('\n'));
    return child;
  }

  /**
   * Told as a container starts. From the second on (a process that ran one container alone, such
   * as `builder run` or a build with one RUN, would not use a spare), a spare for the next one is
   * made meanwhile, when this thread has nothing else to do.
   */
  started(): void {
    if (this.launches++ > 0 && !RuncLauncher.get()?.usable()) setImmediate(() => this.prepare());
  }

  /** runc's absolute path, looked up once; undefined when it cannot be found. */
  private runcPath(): string | undefined {
    if (this.resolved === null) this.resolved = findExecutable(this.command);
    return this.resolved;
  }

  /** Makes a spare if there is none; it keeps nothing alive while it waits. */
  private prepare(): void {
    if (this.spare || this.runcPath() === undefined) return;
    const child = spawn('/bin/sh', ['-c', LAUNCH_SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.on('error', () => {
      if (this.spare === child) this.spare = undefined;
    });
    child.stdin.on('error', () => undefined); // it died before it was used: reported by its exit
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr] as Array<{ unref?(): void }>) s.unref?.();
    this.spare = child;
  }
}

// The spare's script: "<argc>\n<arg>\n…", then it becomes that command with no input. It exits
// quietly when its stdin closes before a request (this process ended without using it); a cut-off
// or empty request fails (125), never passes for a step that ran.
const LAUNCH_SCRIPT = `
IFS= read -r n || exit 0
set --
while [ "$n" -gt 0 ]; do IFS= read -r a || exit 125; set -- "$@" "$a"; n=$((n - 1)); done
[ "$#" -gt 0 ] || exit 125
exec "$@" </dev/null`;

/** `command`'s absolute path as spawn would find it on PATH (a name with a slash as it is), if executable. */
function findExecutable(command: string): string | undefined {
  const candidates = command.includes('/') ? [resolve(command)] : (process.env.PATH ?? '').split(':').filter(Boolean).map((dir) => join(resolve(dir), command));
  for (const path of candidates) {
    try {
      accessSync(path, fsc.X_OK);
      if (statSync(path).isFile()) return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The effective capabilities of this process: all an insecure step can be given. */
function ownCapabilities(): string[] | undefined {
  const mask = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  return mask ? capabilitiesInMask(mask) : undefined;
}

function attach(from: Readable, to: Output): void {
  if (typeof to === 'function') from.on('data', to);
  else from.pipe(to, { end: false });
}

/** `arg` as one word for /bin/sh. */
function shellQuote(arg: string): string {
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

function toResult(code: number): RunResult {
  const n = code - 128;
  if (n > 0 && n < 65) {
    const name = Object.entries(osc.signals).find(([, num]) => num === n)?.[0];
    if (name) return { exitCode: code, signal: name };
  }
  return { exitCode: code };
}

/** A run with input or a terminal: started by spawn, never by the launcher (nor through the seccomp loader). */
function isAttached(spec: ContainerSpec): boolean {
  return spec.stdin !== undefined || spec.terminal === true;
}

/** The seccomp loader's report file in the bundle: what it wrote there instead of starting the command. */
const LOADER_REPORT = 'loader-report';

function loaderFailure(bundle: string): string | undefined {
  try {
    return readFileSync(join(bundle, LOADER_REPORT), 'utf8') || undefined;
  } catch {
    return undefined;
  }
}

/** `start(fds)` with `files` open as those fds (closed here once the child has its copies). */
function spawnWithFiles<T>(files: readonly PassedFile[], start: (fds: number[]) => T): T {
  const fds: number[] = [];
  try {
    for (const f of files) fds.push(openSync(f.path, f.write ? 'w' : 'r'));
    return start(fds);
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

/** The error runc logged, if it failed itself (the process's own non-zero exit logs nothing). */
async function runcFailure(logPath: string): Promise<string | undefined> {
  const text = await readFile(logPath, 'utf8').catch(() => '');
  const errors: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if ((entry.level === 'error' || entry.level === 'fatal') && entry.msg) errors.push(entry.msg);
    } catch {
      // not JSON: ignore
    }
  }
  return errors.length ? errors.join('; ') : undefined;
}

/** Removes a bundle; an in-memory one is unmounted first, and emptied even when that fails. */
async function removeBundle(bundle: string, inMemory: boolean): Promise<void> {
  if (inMemory) {
    try {
      await unmountAll(bundle);
    } catch (err) {
      try {
        rmSync(bundle, { recursive: true, force: true });
      } catch {
        // the mount point itself stays: the error above says why
      }
      throw err;
    }
  }
  // A few flat files (config.json, /etc files, secrets, sockets), unlinked synchronously: no tree
  // walk, and no thread-pool round trip on the path between two steps.
  let names: string[];
  try {
    names = readdirSync(bundle);
  } catch {
    return;
  }
  try {
    for (const name of names) unlinkSync(join(bundle, name));
    rmdirSync(bundle);
  } catch {
    rmSync(bundle, { recursive: true, force: true });
  }
}

async function bundleOwner(bundle: string): Promise<string | undefined> {
  try {
    const config = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as { annotations?: Record<string, string> };
    return config.annotations?.[OWNER_ANNOTATION];
  } catch {
    return undefined;
  }
}

/**
 * Remembers which mount targets (and their parents) are missing from the rootfs before the run,
 * so the empty files and directories runc creates for them can be removed afterwards, as
 * BuildKit does: they must not show up in the step's layer.
 */
class MountStubs {
  private constructor(
    private readonly rootfs: string,
    /** Host paths, deepest first, each resolved inside the rootfs as runc resolves targets. */
    private readonly created: string[],
  ) {}

  static record(rootfs: string, targets: string[]): MountStubs {
    const missing = new Set<string>();
    for (const target of targets) {
      // Resolved first: through a symlink in the image, the missing parents are the link
      // target's, which runc creates.
      for (let path = resolveInRootSync(rootfs, target); path !== rootfs && !missing.has(path); path = dirname(path)) {
        if (exists(path)) break;
        missing.add(path);
      }
    }
    return new MountStubs(rootfs, [...missing].sort((a, b) => b.length - a.length));
  }

  /**
   * Removes the stubs, all at once but each after its own stubbed children: /etc/hosts need not
   * wait for /proc, so removing a typical set takes one round of rmdirs and unlinks, not one per depth.
   */
  async cleanup(): Promise<void> {
    const removals = new Map<string, Promise<void>>();
    // Deepest first (a child's path is longer than its parent's): children are scheduled before their parent.
    for (const path of this.created) {
      const children = [...removals].filter(([child]) => dirname(child) === path).map(([, removal]) => removal);
      removals.set(path, children.length > 0 ? Promise.all(children).then(() => this.remove(path)) : this.remove(path));
    }
    await Promise.all(removals.values());
  }

  private async remove(path: string): Promise<void> {
    try {
      // The step may have swapped a parent for a symlink: never delete through one.
      if (resolveInRootSync(this.rootfs, path.slice(this.rootfs.length)) !== path) return;
      const st = lstatSync(path, { throwIfNoEntry: false });
      if (!st) return;
      if (st.isDirectory()) await rmdir(path); // kept if the step put files in it
      else if (st.isFile() && st.size === 0) await unlink(path);
    } catch {
      // not empty, gone, or not resolvable any more: leave it
    }
  }
}

/** False only when nothing is at `path` (a file in the way counts as something: runc fails on it). */
function exists(path: string): boolean {
  try {
    return lstatSync(path, { throwIfNoEntry: false }) !== undefined;
  } catch {
    return true;
  }
}
