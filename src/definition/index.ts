// The Definition: a content-addressed DAG of build operations, the contract between a frontend
// (the Dockerfile compiler, or any other producer) and the solver. Like BuildKit's LLB, it says
// *what* to build, never *how*: every value here is plain data that can be printed and hashed.

import { canonicalJson, sha256 } from '../oci/digest.js';
import type { ContainerConfig, Digest, HistoryEntry, Platform } from '../oci/types.js';

export type { Digest, Platform } from '../oci/types.js';

/** An empty filesystem (`FROM scratch`). */
export interface ScratchOp {
  type: 'scratch';
}

/** A base image, always pinned: `ref` is fully qualified and carries the manifest digest. */
export interface ImageOp {
  type: 'image';
  /** e.g. `docker.io/library/busybox:latest@sha256:…` */
  ref: string;
  platform: Platform;
}

/** Files from the build context (or another named local directory). */
export interface LocalOp {
  type: 'local';
  name: string;
  /** `.dockerignore` patterns, Docker's syntax and order. */
  exclude: string[];
}

/**
 * A file downloaded over HTTP(S) (ADD <url>): a filesystem holding `/<filename>`, mode 0600 as in
 * Docker. With `checksum` the download must match it, and the content is known without fetching.
 */
export interface HttpOp {
  type: 'http';
  url: string;
  filename: string;
  /** `sha256:<hex>` (ADD --checksum). */
  checksum?: Digest;
}

/** A command run in a container whose root filesystem is input 0; its output is that fs after the run. */
export interface ExecOp {
  type: 'exec';
  args: string[];
  env: string[];
  cwd: string;
  /** As in Docker's USER: `name`, `uid`, `name:group`, `uid:gid`; empty means root. */
  user: string;
  network: 'none' | 'host';
  /** `insecure`: run privileged (RUN --security=insecure). Absent for the default sandbox. */
  security?: 'insecure';
  /**
   * Files that exist only while the command runs (e.g. a RUN heredoc with a `#!` line, run as a
   * script): written read-only-by-convention with `mode`, removed afterwards, never in the output.
   * Absent for most ops, so older digests are unchanged.
   */
  scripts?: ScriptFile[];
  /**
   * Proxy variables from the predefined proxy build args (HTTP_PROXY …) that no ARG declared:
   * in the command's environment, but (as in BuildKit) neither in the cache key nor in history.
   */
  proxyEnv?: string[];
  /** Filesystems, secrets and sockets mounted for the command only (RUN --mount). Absent when none. */
  mounts?: ExecMount[];
  /**
   * Lines added to the command's /etc/hosts (`--add-host`). As in BuildKit, the cache key holds
   * the host names only: the same build pointed at another address still hits.
   */
  extraHosts?: ExtraHost[];
  /** Resource limits of the command (`--ulimit`), in the cache key as in BuildKit. */
  ulimits?: Ulimit[];
  /** Size of the command's /dev/shm in bytes (`--shm-size`; default 64 MiB), in the cache key. */
  shmSize?: number;
}

/** An /etc/hosts entry: `ip` is an IPv4 or IPv6 address. */
export interface ExtraHost {
  host: string;
  ip: string;
}

/** A POSIX resource limit: `name` as `ulimit` spells it (`nofile`, `nproc`, `core` …). */
export interface Ulimit {
  name: string;
  soft: number;
  hard: number;
}

/**
 * What an exec op mounts besides its root filesystem, as BuildKit's RUN --mount. Nothing a mount
 * shows ends up in the op's output: writes under a target go to the mount (or are thrown away).
 * `target` is always absolute.
 */
export type ExecMount = BindMount | CacheMount | TmpfsMount | SecretMount | SshMount;

/**
 * `type=bind`: a path of another filesystem (a stage, an image, or the build context after
 * `.dockerignore`), read-only unless `readonly` is false, when writes are allowed and discarded.
 * What is mounted is part of the step's cache key.
 */
export interface BindMount {
  type: 'bind';
  target: string;
  /** The vertex input (index into Vertex.inputs, never 0) whose filesystem is mounted. */
  input: number;
  /** Path inside that input, resolved inside it; `/` for all of it. */
  source: string;
  readonly: boolean;
}

/**
 * `type=cache`: a directory kept in the state directory between steps and builds, by `id`;
 * what it holds is never part of a layer nor of a cache key.
 */
export interface CacheMount {
  type: 'cache';
  target: string;
  /** Steps and builds that use the same id share the directory (default: the target as written). */
  id: string;
  /** shared: used at once by all; private: a concurrent user gets another instance; locked: one user at a time. */
  sharing: 'shared' | 'private' | 'locked';
  readonly: boolean;
  /** What a new cache directory starts with: `source` of this input (index into Vertex.inputs). */
  input?: number;
  /** Path in `input` (default `/`). */
  source?: string;
  /** Mode and owner of a new cache directory (default 0755, 0:0). */
  mode: number;
  uid: number;
  gid: number;
}

/** `type=tmpfs`: an empty tmpfs. */
export interface TmpfsMount {
  type: 'tmpfs';
  target: string;
  /** Bytes (default: the kernel's, half of RAM). */
  size?: number;
}

/**
 * `type=secret`: the secret `id` the build was given, as a file at `target` and/or the value of
 * environment variable `env`. Only the id is in the definition, never the value.
 */
export interface SecretMount {
  type: 'secret';
  id: string;
  target?: string;
  env?: string;
  /** Fail when the build has no secret `id` (otherwise nothing is mounted). */
  required: boolean;
  /** Of the file (default 0400, 0:0). */
  mode: number;
  uid: number;
  gid: number;
}

/** `type=ssh`: a socket at `target` forwarding to the SSH agent `id` the build was given. */
export interface SshMount {
  type: 'ssh';
  /** Default `default`. */
  id: string;
  target: string;
  required: boolean;
  /** Of the socket (default 0600, 0:0). */
  mode: number;
  uid: number;
  gid: number;
}

export interface ScriptFile {
  /** Absolute path inside the container. */
  path: string;
  data: string;
  mode: number;
}

export interface Chown {
  user: string;
  group?: string;
}

/** Copy paths from input `sourceInput` into the file op's destination (input 0). */
export interface CopyAction {
  action: 'copy';
  sourceInput: number;
  /** Source paths relative to the source root; may hold Docker's wildcards. */
  src: string[];
  /** Absolute destination; a trailing `/` means "into this directory". */
  dest: string;
  chown?: Chown;
  /** File mode bits to set on every copied entry (COPY --chmod). */
  chmod?: number;
  /**
   * ADD: a source file that is a tar archive (plain, gzip, bzip2, xz; recognised by content)
   * is extracted into `dest` instead of copied.
   */
  unpack?: boolean;
  /** Paths (relative to the source root, Docker's wildcards) left out of the copy (COPY --exclude). */
  exclude?: string[];
  /** Keep each source's parent directories (relative to the source root) under `dest` (COPY --parents). */
  parents?: boolean;
}

/** Create a directory (WORKDIR), with missing parents. */
export interface MkdirAction {
  action: 'mkdir';
  path: string;
  mode: number;
  chown?: Chown;
}

/** Create (or replace) a regular file with the given content (COPY <<EOF), with missing parents. */
export interface MkfileAction {
  action: 'mkfile';
  /** Absolute path of the file. */
  path: string;
  /** The file's content, UTF-8. */
  data: string;
  mode: number;
  chown?: Chown;
}

export type FileAction = CopyAction | MkdirAction | MkfileAction;

/** File operations applied on input 0 (the destination filesystem). */
export interface FileOp {
  type: 'file';
  actions: FileAction[];
}

export type Op = ScratchOp | ImageOp | LocalOp | ExecOp | FileOp | HttpOp;

/** Where a vertex came from: shown in progress and errors, never part of a digest. */
export interface VertexMeta {
  /** e.g. `[builder 2/5] RUN npm ci` */
  name: string;
  file?: string;
  startLine?: number;
  endLine?: number;
  /** Exclude the vertex from progress output (internal steps such as the context source). */
  hidden?: boolean;
  /**
   * Where the step sits (stage and position, e.g. `builder#2`): stays the same when its text or
   * the files it reads change, so the solver can find the step's previous cache key and say what
   * changed.
   */
  position?: string;
}

export interface Vertex {
  op: Op;
  /** Digests of the vertices whose outputs this op reads, in the op's input order. */
  inputs: Digest[];
  meta: VertexMeta;
}

export interface Definition {
  vertices: Map<Digest, Vertex>;
}

/** Describes how to turn a solved root into an image: config, and history with one entry per step. */
export interface ImageSpec {
  /** The image's own config section (Env, Cmd, …) after all instructions. */
  config: ContainerConfig;
  platform: Platform;
  /** The config's top-level `author`: MAINTAINER's text, else the base image's. */
  author?: string;
  /**
   * History of the base image followed by one entry per instruction. An entry with `vertex`
   * adds the layer that vertex produced (an empty one too, as in BuildKit).
   */
  history: Array<HistoryEntry & { vertex?: Digest }>;
}

/**
 * `text` with the credentials of every URL in it masked (`https://user:***@host/`, or
 * `https://***@host/` for a lone user or token), for progress, errors and history.
 */
export function redactCredentials(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#]*)@/gi, (_m, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    return `${scheme}${colon < 0 ? '***' : `${userinfo.slice(0, colon)}:***`}@`;
  });
}

/** The content address of a vertex: its op and its inputs, never its metadata. */
export function vertexDigest(op: Op, inputs: readonly Digest[]): Digest {
  return sha256(canonicalJson({ op, inputs }));
}

/** Builds a Definition, deduplicating identical vertices. */
export class DefinitionBuilder {
  readonly vertices = new Map<Digest, Vertex>();

  add(op: Op, inputs: readonly Digest[], meta: VertexMeta): Digest {
    const digest = vertexDigest(op, inputs);
    if (!this.vertices.has(digest)) this.vertices.set(digest, { op, inputs: [...inputs], meta });
    return digest;
  }

  build(): Definition {
    return { vertices: new Map(this.vertices) };
  }
}
