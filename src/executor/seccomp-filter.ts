// Docker's seccomp profile, compiled once instead of at every container start.
//
// runc turns the profile's ~360 syscall names into a BPF program with libseccomp each time it
// starts a container: about 15 ms of the 85 ms a trivial RUN step's `runc run` takes. Here
// the program runc makes is taken from a container runc started with the profile (read with
// ptrace, as the kernel holds it: the same instructions, byte for byte), kept on disk, and a RUN
// step's container starts without `linux.seccomp` through the seccomp loader
// (seccomp-loader.c), which installs that program and execs the step's command as runc would.
//
// The compiled program is keyed by everything that shapes it: the profile, the runc binary, the
// libseccomp it loads, and the kernel (libseccomp asks the kernel what it supports). Where any
// part is missing (no loader built, no ptrace), runc compiles the profile itself, as before.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir, release } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { writeFileAtomicSync } from '../util/write-file.js';
import { buildSpec } from './spec.js';
import type { LinuxSeccomp } from './seccomp.js';

/** Where the loader is in the container's view: runc passes it as fd 3 (`--preserve-fds`). */
export const LOADER_IN_CONTAINER = '/proc/self/fd/3';

/** What a container needs to start through the loader: the files runc passes on as fds 3, 4 and 5. */
export interface CompiledSeccomp {
  loader: string;
  filter: string;
}

/**
 * The built loader: beside dist/ from the compiled modules and the CLI bundle, in dist/ from src/.
 * Relative to this module, resolved at first use: a URL made at load costs every start.
 */
const LOADER_CANDIDATES = ['../seccomp-loader', '../../dist/seccomp-loader'];

let loaderPath: string | undefined | null = null;
function findLoader(): string | undefined {
  if (loaderPath === null) loaderPath = LOADER_CANDIDATES.map((relative) => fileURLToPath(new URL(relative, import.meta.url))).find((p) => existsSync(p));
  return loaderPath;
}

interface FileId {
  path: string;
  size: number;
  mtimeMs: number;
  ino: number;
}

function fileId(path: string): FileId | undefined {
  try {
    const st = statSync(path);
    return { path, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
  } catch {
    return undefined;
  }
}

/**
 * Whether only this user can have written `path`: the program is every container's sandbox, so
 * one that someone else could have put there is not used.
 */
function ownedByUs(path: string): boolean {
  try {
    const st = statSync(path);
    return st.uid === process.getuid?.() && (st.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

const sameFile = (a: FileId | undefined, b: FileId): boolean => a !== undefined && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino;

export interface SeccompCompilerOptions {
  /** runc's absolute path. */
  runc: string;
  /** runc's global flags (`--root`). */
  rootArgs: readonly string[];
  /** Where the container that compiles the profile gets its bundle. */
  bundleRoot: string;
  /** Where compiled programs are kept (default: defaultSeccompCacheDir()). */
  cacheDir?: string;
  /** Container id prefix and annotations, so that a sweep removes a container a crash left behind. */
  containerId: () => string;
  annotations: Record<string, string>;
  /** Deletes container `id` if runc still has it (the executor's own clean-up). */
  removeContainer: (id: string) => Promise<void>;
}

/**
 * The compiled programs' home: a user cache, not a state directory. They belong to this machine's
 * runc, libseccomp and kernel, not to any build, and a fresh state directory should not cost a
 * compilation.
 */
export function defaultSeccompCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'builder', 'seccomp');
}

/** Compiled programs by runc, cache and profile: one compilation per process at most. */
const compiled = new Map<string, Promise<CompiledSeccomp | undefined>>();

/**
 * The compiled form of `profile`: from the cache, else compiled now (one container start); undefined
 * when it cannot be had here, and runc is to compile the profile itself.
 */
export function compiledSeccomp(profile: LinuxSeccomp, opts: SeccompCompilerOptions): Promise<CompiledSeccomp | undefined> {
  const profileJson = JSON.stringify(profile);
  const memo = `${opts.runc}\0${opts.cacheDir ?? defaultSeccompCacheDir()}\0${profileJson}`;
  let result = compiled.get(memo);
  if (!result) {
    result = compile(profileJson, opts).catch(() => undefined);
    compiled.set(memo, result);
  }
  return result;
}

async function compile(profileJson: string, opts: SeccompCompilerOptions): Promise<CompiledSeccomp | undefined> {
  const loader = findLoader();
  const runc = fileId(opts.runc);
  if (!loader || !runc) return undefined;
  const key = createHash('sha256').update(JSON.stringify({ profile: profileJson, kernel: release(), runc })).digest('hex').slice(0, 32);
  const dir = opts.cacheDir ?? defaultSeccompCacheDir();
  const filter = join(dir, `${key}.bpf`);
  const meta = join(dir, `${key}.json`);
  try {
    const { libraries } = JSON.parse(readFileSync(meta, 'utf8')) as { libraries: FileId[] };
    if ([dir, filter, meta].every(ownedByUs) && libraries.every((lib) => sameFile(fileId(lib.path), lib))) return { loader, filter };
  } catch {
    // not compiled yet (or unreadable): compile it again
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!ownedByUs(dir)) return undefined;
  const made = await fromRunc(JSON.parse(profileJson) as LinuxSeccomp, loader, opts);
  // A build reading at the same time sees the old file or the new one.
  writeFileAtomicSync(filter, made.program, 0o600);
  writeFileAtomicSync(meta, JSON.stringify({ libraries: made.libraries }), 0o600);
  return { loader, filter };
}

/**
 * Starts a container with `profile` as runc's own seccomp filter, the loader waiting in it, and
 * reads back the program runc installed; also which libseccomp runc had loaded.
 */
async function fromRunc(profile: LinuxSeccomp, loader: string, opts: SeccompCompilerOptions): Promise<{ program: Buffer; libraries: FileId[] }> {
  const id = opts.containerId();
  const bundle = join(opts.bundleRoot, id);
  const rootfs = join(bundle, 'rootfs');
  mkdirSync(rootfs, { recursive: true, mode: 0o700 });
  const etcFiles = { hosts: join(bundle, 'hosts'), resolvConf: join(bundle, 'resolv.conf'), hostname: join(bundle, 'hostname') };
  for (const file of Object.values(etcFiles)) writeFileSync(file, '');
  const config = buildSpec({
    rootfs,
    args: [LOADER_IN_CONTAINER, '--pause'],
    env: [],
    cwd: '/',
    user: { uid: 0, gid: 0, additionalGids: [], home: '/' },
    hostname: 'seccomp',
    network: 'none',
    etcFiles,
    annotations: opts.annotations,
  });
  config.linux.seccomp = profile;
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
  const pidFile = join(bundle, 'pid');
  const loaderFd = openSync(loader, 'r');
  const runc = spawn(opts.runc, [...opts.rootArgs, '--log', join(bundle, 'runc.log'), '--log-format', 'json', 'run', '--bundle', bundle, '--pid-file', pidFile, '--preserve-fds', '1', id], {
    // runc reports its own failures in its log; the loader says "ready" on stdout.
    stdio: ['ignore', 'pipe', 'ignore', loaderFd],
  });
  closeSync(loaderFd);
  const exited = new Promise<void>((resolve) => runc.on('close', () => resolve()));
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      (runc.stdout as Readable).on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('ready\n')) resolve();
      });
      runc.on('error', reject);
      void exited.then(() => reject(new Error('runc exited before the loader was ready')));
      timer = setTimeout(() => reject(new Error('the loader was not ready in time')), READY_TIMEOUT_MS);
    });
    // runc may write the pid file just after the process has started.
    for (let i = 0; i < 400 && !existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 5));
    const pid = Number(readFileSync(pidFile, 'utf8'));
    const libraries = readFileSync(`/proc/${runc.pid}/maps`, 'utf8')
      .split('\n')
      .map((line) => line.split(/\s+/).slice(5).join(' '))
      .filter((path, i, all) => /\/libseccomp[^/]*$/.test(path) && all.indexOf(path) === i)
      .flatMap((path) => fileId(path) ?? []);
    const program = await dumpFilter(loader, pid);
    if (program.length === 0 || program.length % 8 !== 0 || program.length > 4096 * 8) throw new Error(`a seccomp program of ${program.length} bytes`);
    return { program, libraries };
  } finally {
    clearTimeout(timer);
    // The container's process ends the container: runc run then deletes it and exits.
    const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : 0;
    try {
      if (pid > 0) process.kill(pid, 'SIGKILL');
      else runc.kill('SIGKILL');
    } catch {
      // already gone
    }
    await exited;
    // runc run deletes its container when the process ends, unless runc itself was stopped first
    // (a Ctrl-C that reached it before the container started).
    await opts.removeContainer(id);
    rmSync(bundle, { recursive: true, force: true });
  }
}

/** How long the container that compiles the profile may take to start (a few hundred ms on two cores). */
const READY_TIMEOUT_MS = 20_000;

/** The seccomp program of process `pid`, read by the loader on this side (`--dump`). */
function dumpFilter(loader: string, pid: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(loader, ['--dump', String(pid)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`seccomp-loader --dump: ${err.trim() || `exit ${code}`}`))));
  });
}
