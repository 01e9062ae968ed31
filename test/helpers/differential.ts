// Building one context with Docker's BuildKit (the reference) and with builder, and listing every
// way the two images differ: the whole image config (top-level fields, history entry by entry,
// the config section) and the unpacked filesystem (type, mode, owner, size, content, link
// target, hardlink count, and mtimes where both keep the source's).
//
// Needs a working docker engine; dockerSkipReason() says why not, for describe.skipIf.

import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { chmod, lutimes, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { build } from '../../src/client/build.js';
import type { ImageConfigFile } from '../../src/oci/types.js';

/** Docker 20.10's own CLI drives its built-in BuildKit without buildx (see TESTBED.md). */
export const DOCKER = ['/usr/bin/docker', '/usr/local/bin/docker'].find((p) => spawnSync(p, ['--version']).status === 0) ?? 'docker';

export function dockerSkipReason(): string | undefined {
  const r = spawnSync(DOCKER, ['info', '--format', '{{.ServerVersion}}'], { encoding: 'utf8', timeout: 20_000 });
  if (r.error) return `no docker client (${r.error.message})`;
  if (r.status !== 0) return `docker info failed: ${(r.stderr || r.stdout).trim().split('\n')[0] ?? ''}`;
  return undefined;
}

export function tool(cmd: string, args: string[], env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** As tool(), without blocking this process (a test's HTTP server must answer BuildKit meanwhile). */
async function toolAsync(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  try {
    return (await promisify(execFile)(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20 })).stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
}

/** One build, the same for both builders. `@@BASE@@` in any text is replaced by the base image. */
export interface DiffCase {
  dockerfile: string;
  /** The Dockerfile's name in the context (`-f`); default `Dockerfile`. */
  dockerfileName?: string;
  files?: Record<string, string>;
  /** Context symlinks: path → target. */
  links?: Record<string, string>;
  /** Context file modes (applied after writing, before the builds). */
  modes?: Record<string, number>;
  /** gzip tarballs made in the context: archive path → files in it. */
  tarballs?: Record<string, Record<string, string>>;
  buildArgs?: Record<string, string>;
  /** `docker build --label`. */
  labels?: Record<string, string>;
  target?: string;
  /** Path prefixes in the image under which files (not directories) must keep the same mtime. */
  mtimes?: string[];
}

/** Context files get this mtime, so a builder that keeps it gives a comparable result. */
const CONTEXT_MTIME = new Date('2021-03-04T05:06:07Z');

export interface Comparison {
  /** `path: buildkit … builder …` for every config value that differs. */
  config: string[];
  /** The same for every filesystem entry. */
  filesystem: string[];
  ours: { config: ImageConfigFile; tree: Map<string, FsEntry> };
  theirs: { config: ImageConfigFile; tree: Map<string, FsEntry> };
}

export async function writeContext(dir: string, spec: DiffCase, base: string, subst: Record<string, string> = {}): Promise<void> {
  const fill = (text: string) => Object.entries({ '@@BASE@@': base, ...subst }).reduce((t, [k, v]) => t.replaceAll(k, v), text);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const put = async (file: string, content: string) => {
    await mkdir(dirname(join(dir, file)), { recursive: true });
    await writeFile(join(dir, file), fill(content));
  };
  await put(spec.dockerfileName ?? 'Dockerfile', spec.dockerfile);
  for (const [file, content] of Object.entries(spec.files ?? {})) await put(file, content);
  for (const [archive, files] of Object.entries(spec.tarballs ?? {})) {
    const src = join(dir, `${archive}.src`);
    for (const [file, content] of Object.entries(files)) {
      await mkdir(dirname(join(src, file)), { recursive: true });
      await writeFile(join(src, file), content);
    }
    tool('tar', ['--owner=0', '--group=0', `--mtime=${CONTEXT_MTIME.toISOString()}`, '--sort=name', '-czf', join(dir, archive), '-C', src, '.']);
    await rm(src, { recursive: true });
  }
  for (const [file, mode] of Object.entries(spec.modes ?? {})) await chmod(join(dir, file), mode);
  for (const [file, target] of Object.entries(spec.links ?? {})) {
    await mkdir(dirname(join(dir, file)), { recursive: true });
    await symlink(target, join(dir, file));
  }
  const stamp = (rel: string): Promise<void>[] =>
    readdirSync(join(dir, rel), { withFileTypes: true }).flatMap((e) => {
      const p = join(rel, e.name);
      return [lutimes(join(dir, p), CONTEXT_MTIME, CONTEXT_MTIME), ...(e.isDirectory() ? stamp(p) : [])];
    });
  await Promise.all(stamp(''));
}

/** Builds `ctx` with BuildKit and with builder and lists their differences. */
export async function compareBuilds(
  ctx: string,
  spec: DiffCase,
  opts: { work: string; name: string; root: string; images: string[] },
): Promise<Comparison> {
  const { work, name } = opts;
  const tag = `builder-diff/${name}:test`;
  opts.images.push(tag);
  const args = ['build', '--network=none', '-q', '-t', tag];
  for (const [k, v] of Object.entries(spec.buildArgs ?? {})) args.push('--build-arg', `${k}=${v}`);
  for (const [k, v] of Object.entries(spec.labels ?? {})) args.push('--label', `${k}=${v}`);
  if (spec.target) args.push('--target', spec.target);
  if (spec.dockerfileName) args.push('-f', join(ctx, spec.dockerfileName));
  await toolAsync(DOCKER, [...args, ctx], { DOCKER_BUILDKIT: '1' });
  const dockerTar = join(work, `${name}-docker.tar`);
  tool(DOCKER, ['save', '-o', dockerTar, tag]);

  const ociTar = join(work, `${name}-builder.tar`);
  await build({
    context: ctx,
    ...(spec.dockerfileName ? { dockerfile: join(ctx, spec.dockerfileName) } : {}),
    root: opts.root,
    network: 'none',
    outputs: [{ type: 'oci', dest: ociTar }],
    tags: [`diff-${name}:test`],
    ...(spec.buildArgs ? { buildArgs: spec.buildArgs } : {}),
    ...(spec.labels ? { labels: spec.labels } : {}),
    ...(spec.target ? { target: spec.target } : {}),
  });

  const theirs = { config: archiveConfig(dockerTar), tree: fsTree(unpack(dockerTar, 'docker-archive', work, `${name}-theirs`), spec.mtimes) };
  const ours = { config: archiveConfig(ociTar), tree: fsTree(unpack(ociTar, 'oci-archive', work, `${name}-ours`), spec.mtimes) };
  return { config: configDifferences(theirs.config, ours.config), filesystem: treeDifferences(theirs.tree, ours.tree), ours, theirs };
}

/** The image config in a `docker save` archive (manifest.json) or an OCI archive (index.json). */
export function archiveConfig(tarball: string): ImageConfigFile {
  const member = (path: string) => tool('tar', ['-xOf', tarball, path]);
  const names = tool('tar', ['-tf', tarball]).split('\n');
  if (names.includes('manifest.json')) {
    const [entry] = JSON.parse(member('manifest.json')) as Array<{ Config: string }>;
    return JSON.parse(member(entry!.Config)) as ImageConfigFile;
  }
  const blob = (digest: string) => JSON.parse(member(`blobs/${digest.replace(':', '/')}`)) as Record<string, unknown>;
  let doc = JSON.parse(member('index.json')) as { manifests?: Array<{ digest: string }>; config?: { digest: string } };
  while (doc.manifests) doc = blob(doc.manifests[0]!.digest) as typeof doc;
  return blob(doc.config!.digest) as unknown as ImageConfigFile;
}

function unpack(archive: string, transport: 'oci-archive' | 'docker-archive', work: string, name: string): string {
  const layout = join(work, `${name}-layout`);
  const out = join(work, `${name}-rootfs`);
  tool('rm', ['-rf', layout, out]);
  tool('skopeo', ['copy', '--quiet', `${transport}:${archive}`, `oci:${layout}:img`]);
  tool('umoci', ['unpack', '--image', `${layout}:img`, out]);
  return join(out, 'rootfs');
}

const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

/** Times differ from build to build: only whether one is there, and its form, are compared. */
function timeShape(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  return typeof value === 'string' && RFC3339.test(value) ? '<RFC 3339 time>' : `<not an RFC 3339 time: ${JSON.stringify(value)}>`;
}

/** path → value of every leaf; null and empty objects count as absent (Go writes `"OnBuild": null`). */
function leaves(value: unknown, path: string, out: Map<string, string>): Map<string, string> {
  if (value === null || value === undefined) return out;
  if (typeof value === 'object') {
    const entries = Array.isArray(value) ? value.map((v, i) => [`[${i}]`, v] as const) : Object.entries(value).map(([k, v]) => [`.${k}`, v] as const);
    if (entries.length === 0 && Array.isArray(value)) out.set(path, '[]');
    for (const [k, v] of entries) leaves(v, `${path}${k}`, out);
    return out;
  }
  out.set(path, JSON.stringify(value));
  return out;
}

function comparable(config: ImageConfigFile): Map<string, string> {
  const c = structuredClone(config) as ImageConfigFile & { rootfs: { layers?: number } };
  c.created = timeShape(c.created);
  for (const h of c.history ?? []) h.created = timeShape(h.created);
  c.rootfs = { type: c.rootfs.type, diff_ids: [], layers: c.rootfs.diff_ids.length } as typeof c.rootfs;
  return leaves(c, '', new Map());
}

/**
 * History texts that Docker 20.10's BuildKit (v0.8) writes and current BuildKit changed; builder
 * writes today's. Each accepts only that one change, so any other difference still shows.
 */
const HISTORY_TEXT_CHANGED_SINCE_20_10: Array<{ change: string; explains(theirs: string, ours: string): boolean }> = [
  {
    change: 'ARG: v0.8 writes the default as written, current BuildKit the value the build used',
    explains: (t, o) => t.startsWith('ARG ') && o.startsWith('ARG ') && argNames(t) === argNames(o),
  },
  {
    change: 'COPY/ADD: current BuildKit also writes the --chown and --chmod flags',
    explains: (t, o) => /^(COPY|ADD) /.test(o) && o.replace(/ --ch(own|mod)=\S+/g, '') === t,
  },
  {
    change: 'RUN: current BuildKit passes a stage\'s build args on to stages FROM it (v0.8 dropped them)',
    explains: (t, o) => t.startsWith('RUN ') && o.replace(/^RUN \|\d+ (\S+=\S* )+/, 'RUN ') === t,
  },
  {
    change: 'HEALTHCHECK: v0.8 writes Go %q of the struct (retries as a character), current BuildKit %+v',
    explains: (t, o) => {
      const m = /^HEALTHCHECK &\{\[(.*)\] "(\S+)" "(\S+)" "(\S+)" '\\x([0-9a-f]{2})'\}$/.exec(t);
      if (!m) return false;
      const test = (JSON.parse(`[${m[1]!.replaceAll('" "', '","')}]`) as string[]).join(' ');
      return o === `HEALTHCHECK {Test:[${test}] Interval:${m[2]} Timeout:${m[3]} StartPeriod:${m[4]} StartInterval:0s Retries:${parseInt(m[5]!, 16)}}`;
    },
  },
  {
    change: 'EXPOSE: v0.8 writes the Go map of ports, current BuildKit the list',
    explains: (t, o) => {
      const theirs = /^EXPOSE map\[(.*)\]$/.exec(t)?.[1]?.split(' ').map((p) => p.replace(/:\{\}$/, ''));
      const ours = /^EXPOSE \[(.*)\]$/.exec(o)?.[1]?.split(' ');
      return Boolean(theirs && ours) && [...theirs!].sort().join() === [...ours!].sort().join();
    },
  },
];

function argNames(createdBy: string): string {
  return createdBy.slice(4).split(' ').map((a) => a.split('=')[0]).join(' ');
}

/** Every config value (layer diff IDs by count, times by form) that differs, as `path: buildkit … builder …`. */
export function configDifferences(theirs: ImageConfigFile, ours: ImageConfigFile): string[] {
  const a = comparable(theirs);
  const b = comparable(ours);
  const diffs: string[] = [];
  for (const path of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    const [t, o] = [a.get(path), b.get(path)];
    if (t === o) continue;
    if (/^\.history\[\d+\]\.created_by$/.test(path) && t && o) {
      const [tt, oo] = [JSON.parse(t) as string, JSON.parse(o) as string];
      if (HISTORY_TEXT_CHANGED_SINCE_20_10.some((k) => k.explains(tt, oo))) continue;
    }
    diffs.push(`${path}: buildkit ${t ?? '(absent)'} builder ${o ?? '(absent)'}`);
  }
  return diffs;
}

export interface FsEntry {
  type: 'dir' | 'file' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  target?: string;
  nlink?: number;
  mtime?: string;
}

/** Every path of an unpacked rootfs with what must be equal. */
export function fsTree(rootfs: string, mtimePrefixes: readonly string[] = []): Map<string, FsEntry> {
  const out = new Map<string, FsEntry>();
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(rootfs, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const p = join(rootfs, r);
      const st = lstatSync(p);
      const type = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
      // A symlink's own mode means nothing on Linux.
      const entry: FsEntry = { type, mode: type === 'symlink' ? 0 : st.mode & 0o7777, uid: st.uid, gid: st.gid };
      if (type === 'file') {
        entry.size = st.size;
        entry.sha256 = createHash('sha256').update(readFileSync(p)).digest('hex');
        entry.nlink = st.nlink;
      }
      if (type === 'symlink') entry.target = readlinkSync(p);
      if (type !== 'dir' && mtimePrefixes.some((prefix) => `/${r}`.startsWith(prefix))) entry.mtime = st.mtime.toISOString();
      out.set(`/${r}`, entry);
      if (type === 'dir') walk(r);
    }
  };
  walk('');
  return out;
}

export function treeDifferences(theirs: Map<string, FsEntry>, ours: Map<string, FsEntry>): string[] {
  const diffs: string[] = [];
  for (const p of [...new Set([...theirs.keys(), ...ours.keys()])].sort()) {
    const a = JSON.stringify(theirs.get(p) ?? null);
    const b = JSON.stringify(ours.get(p) ?? null);
    if (a !== b) diffs.push(`${p}: buildkit ${a} builder ${b}`);
  }
  return diffs;
}
