// `run()`: runs an image of the local store once, as `docker run` does, in a container under runc
// made as a build's RUN step is: the image's layers unpacked into snapshots (once per state
// directory), an active snapshot on top as the container's writable layer, the executor for the
// rest. The state directory is held while the filesystem is prepared, and let go before the
// container starts: a long run does not keep builds waiting.
//
// With `remove` (--rm) nothing stays once it exits: container, bundle, mounts and snapshot go.
// Otherwise the container stays, exited, with its writable layer, until removeContainers().

import { randomBytes } from 'node:crypto';
import { readFile, realpath } from 'node:fs/promises';
import { hostname as hostHostname } from 'node:os';
import { resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { ContainerStore, type ContainerRecord } from '../cache/containers.js';
import { defaultStateRoot, openState, type State } from '../cache/state.js';
import { bundleRoot, sweepLeftovers } from './sweep.js';
import { LocalStore, NoSuchImageError } from './images.js';
import { RuncError, RuncExecutor, type ContainerMount } from '../executor/runc.js';
import { chainIDs } from '../oci/digest.js';
import type { ImageConfigFile, ImageManifest } from '../oci/types.js';
import { parseReference } from '../registry/reference.js';
import { createSnapshotter, unpackLayer, withMounts, type LocalSnapshotter, type SnapshotterKind } from '../snapshotter/index.js';
import { processToken } from '../util/process.js';
import { commandLine, mergeEnv, parseEnvFile, RunConfigError, type Volume } from './run-config.js';

export { parseVolumeFlag, RunConfigError, type Volume } from './run-config.js';

export interface RunOptions {
  /** A name in the local store (`app` is `app:latest`), `name@sha256:…`, or an image ID or a unique prefix of it. */
  image: string;
  /** Replace the image's CMD. */
  args?: string[];
  /** Replace the image's ENTRYPOINT (and drop its CMD); `''` clears it. */
  entrypoint?: string;
  /** `K=V` over the image's ENV, after `envFiles`; a bare `K` takes K from this process's environment, or unsets it. */
  env?: string[];
  /** Files of `K=V` lines (docker's --env-file format), read in order. */
  envFiles?: string[];
  /** Working directory (absolute), instead of the image's WORKDIR. */
  workdir?: string;
  /** `user`, `uid`, `user:group` or `uid:gid`, instead of the image's USER. */
  user?: string;
  /** `host` (default, as builds' RUN steps: there is no bridge) or `none` (loopback only). */
  network?: 'host' | 'none';
  volumes?: Volume[];
  /** Default: the first 12 digits of the container's ID. */
  name?: string;
  /** Remove the container when it exits (--rm). */
  remove?: boolean;
  /** A pseudo-terminal as the process's stdin, stdout and stderr (its output all goes to `stdout`). */
  tty?: boolean;
  /** What the process reads (-i); without it, nothing. A terminal (process.stdin) is handed over as it is. */
  stdin?: Readable;
  /** Default: this process's stdout and stderr. */
  stdout?: Writable;
  stderr?: Writable;
  /** State directory; default as for `build()`. */
  root?: string;
  snapshotter?: SnapshotterKind;
  /** Told once the container starts; `kill` sends its process a signal (forward Ctrl-C to it, say). */
  onStart?: (container: RunningContainer) => void;
  /** Told when the state directory is held by another build (the run waits for it). */
  onWarning?: (message: string) => void;
  /** Aborting kills the container (SIGKILL) and cleans up; run() then rejects with an AbortError. */
  signal?: AbortSignal;
}

export interface RunningContainer {
  id: string;
  name: string;
  kill(signal: NodeJS.Signals): Promise<void>;
}

export interface RunResult {
  id: string;
  name: string;
  /** The process's exit code (128+n when signal n killed it). */
  exitCode: number;
}

/** The container's command could not be started: not found (127) or not executable (126), as docker reports it. */
export class ContainerStartError extends Error {
  constructor(
    message: string,
    readonly exitCode: 126 | 127,
  ) {
    super(message);
    this.name = 'ContainerStartError';
  }
}

export async function run(opts: RunOptions): Promise<RunResult> {
  // The caller's own mistakes first, before the state directory is taken.
  if (opts.workdir !== undefined && !opts.workdir.startsWith('/')) throw new RunConfigError(`the working directory "${opts.workdir}" must be an absolute path`);
  const fileEnv: string[] = [];
  for (const file of opts.envFiles ?? []) {
    const text = await readFile(file, 'utf8').catch((err: Error) => {
      throw new RunConfigError(`cannot read env file ${file}: ${err.message}`);
    });
    fileEnv.push(...parseEnvFile(text, file));
  }
  const binds = await Promise.all((opts.volumes ?? []).map(bindMount));
  const network = opts.network ?? 'host';

  const state = await openRunState(opts.root, opts);
  let held = true;
  const release = async (clean: boolean): Promise<void> => {
    if (!held) return;
    held = false;
    await state.release({ clean });
  };
  const containers = new ContainerStore(state.root);
  let record: ContainerRecord | undefined;
  let sn: LocalSnapshotter | undefined;
  let started = false;
  try {
    const image = await findImage(state, opts.image);
    const config = image.config.config ?? {};
    const id = randomBytes(32).toString('hex');
    const hostname = network === 'host' ? hostHostname() : id.slice(0, 12);
    // As docker: HOSTNAME (and TERM with a terminal) first, the image's ENV over them, then the options.
    const env = mergeEnv([`HOSTNAME=${hostname}`, ...(opts.tty ? ['TERM=xterm'] : []), ...(config.Env ?? [])], [...fileEnv, ...(opts.env ?? [])]);
    const created: ContainerRecord = {
      id,
      name: opts.name ?? id.slice(0, 12),
      image: opts.image,
      imageId: image.manifest.config.digest,
      command: commandLine(config, opts.entrypoint, opts.args ?? []),
      created: new Date().toISOString(),
      snapshot: `container-${id}`,
      remove: opts.remove === true,
      owner: processToken(),
    };
    await containers.create(created);
    record = created;
    sn = await createSnapshotter(state.root, opts.snapshotter ?? 'auto');
    const parent = await unpackImage(sn, state, image.manifest, image.config, opts.signal);
    const mounts = await sn.prepare(record.snapshot, parent);
    if (!record.remove) await sn.keep(record.snapshot);
    // Not clean while the container runs: should this process die, the next build sweeps.
    await release(false);

    const executor = new RuncExecutor({ bundleRoot: bundleRoot(state.root) });
    const { name } = created;
    started = true;
    const result = await withMounts(mounts, (rootfs) =>
      executor.run({
        rootfs,
        args: created.command,
        env,
        cwd: opts.workdir ?? (config.WorkingDir || '/'),
        user: opts.user ?? config.User ?? '',
        primaryGroupInGroups: true,
        network,
        hostname,
        mounts: binds,
        stdin: opts.stdin,
        terminal: opts.tty,
        stdout: opts.stdout ?? process.stdout,
        stderr: opts.stderr ?? process.stderr,
        onStart: (kill) => opts.onStart?.({ id, name, kill }),
        signal: opts.signal,
      }),
    ).catch((err: unknown) => {
      throw startError(err);
    });
    record.exitCode = result.exitCode;
    return { id, name, exitCode: result.exitCode };
  } catch (err) {
    if (record && record.exitCode === undefined) record.exitCode = err instanceof ContainerStartError ? err.exitCode : 125;
    throw err;
  } finally {
    try {
      if (record) await settle(containers, sn, record, started);
    } finally {
      // Failed before the container started: what it made is gone again.
      await release(true);
    }
  }
}

/** Holds the state directory as a build does (one place, so that how it is held changes once). */
export function openRunState(root: string | undefined, opts: { signal?: AbortSignal; onWarning?: (message: string) => void }): Promise<State> {
  return openState(root ?? defaultStateRoot(), { signal: opts.signal, onWait: (message) => opts.onWarning?.(message), sweep: (dir) => sweepLeftovers(dir) });
}

/** After the run (or a failure): an --rm container, or one that never started, goes; another is recorded as exited. */
async function settle(containers: ContainerStore, sn: LocalSnapshotter | undefined, record: ContainerRecord, started: boolean): Promise<void> {
  if (record.remove || !started) {
    if (sn && (await sn.stat(record.snapshot))) await sn.remove(record.snapshot);
    await containers.delete(record.name);
    return;
  }
  const { owner: _owner, ...exited } = record;
  await containers.update({ ...exited, finished: new Date().toISOString() });
}

/** The image `ref` names in the local store, for this machine's platform. */
async function findImage(state: State, ref: string): Promise<{ manifest: ImageManifest; config: ImageConfigFile }> {
  // `name@sha256:…` whose manifest is here, named or not.
  const pinned = (() => {
    try {
      return parseReference(ref).digest;
    } catch {
      return undefined; // not a name: maybe an ID
    }
  })();
  if (pinned && (await state.store.has(pinned))) {
    const manifest = await state.store.readJson<ImageManifest>(pinned);
    return { manifest, config: await state.store.readJson<ImageConfigFile>(manifest.config.digest) };
  }
  try {
    const { image } = await new LocalStore(state.root, false).find(ref);
    return { manifest: image.manifest, config: image.config };
  } catch (err) {
    if (err instanceof NoSuchImageError) throw new RunConfigError(`no such image in the local store: ${ref} (build or pull it first)`);
    throw new RunConfigError((err as Error).message);
  }
}

/** Unpacks the image's layers (those not unpacked yet); returns the snapshot of the whole chain. */
async function unpackImage(sn: LocalSnapshotter, state: State, manifest: ImageManifest, config: ImageConfigFile, signal: AbortSignal | undefined): Promise<string | undefined> {
  const diffIDs = config.rootfs.diff_ids;
  if (diffIDs.length !== manifest.layers.length) throw new Error(`image ${manifest.config.digest}: ${manifest.layers.length} layers but ${diffIDs.length} diff_ids`);
  const chain = chainIDs(diffIDs);
  for (const [i, layer] of manifest.layers.entries()) {
    signal?.throwIfAborted();
    if (!(await sn.stat(chain[i]!)) && !(await state.store.has(layer.digest))) {
      throw new Error(`layer ${layer.digest} of the image is not in the local store: pull the image again`);
    }
    if (!(await sn.stat(chain[i]!))) await unpackLayer(sn, chain[i]!, chain[i - 1], { ...layer, diffID: diffIDs[i]! }, state.store.read(layer.digest), { signal });
  }
  return chain.at(-1);
}

/** A `-v` bind: the host path must exist, and is resolved (symlinks too) before it is mounted. */
async function bindMount(v: Volume): Promise<ContainerMount> {
  const source = await realpath(resolve(v.source)).catch(() => {
    throw new RunConfigError(`-v ${v.source}:${v.target}: the host path ${resolve(v.source)} does not exist`);
  });
  if (!v.target.startsWith('/')) throw new RunConfigError(`-v ${v.source}:${v.target}: the container path must be absolute`);
  return { type: 'bind', source, target: v.target, readonly: v.readonly === true };
}

/** runc's failure to start the command, as docker run reports it: 127 not found, 126 not executable. */
function startError(err: unknown): unknown {
  if (!(err instanceof RuncError)) return err;
  if (/executable file not found|no such file or directory|not a directory/.test(err.message)) return new ContainerStartError(err.message, 127);
  if (/permission denied/.test(err.message)) return new ContainerStartError(err.message, 126);
  return err;
}
