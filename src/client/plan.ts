// `builder build --dry-run`: compile a Dockerfile into its Definition and show the stages and
// steps a build would run, with each vertex digest, without pulling, executing or writing
// anything. Base images are resolved from the local store when it has them; otherwise the stage
// compiles on an empty base config and the reference is reported as unresolved.
//
// This module is kept light on purpose (no registry client, snapshotter or executor): the CLI
// loads it alone for a dry run, so start-up stays cheap.

import type { Digest, ExecMount, Platform, Vertex } from '../definition/index.js';
import { sha256 } from '../oci/digest.js';
import { compileOptions, readBuildInput, type BuildDefinitionOptions } from './input.js';
import { defaultStateRoot } from '../cache/state-root.js';
import { compile, type CompileResult, type CompileWarning, type ResolvedImage } from '../frontend/index.js';
import { ContentStore } from '../cache/content-store.js';
import { ImageStore } from '../cache/image-store.js';
import type { ImageConfigFile, ImageManifest } from '../oci/types.js';
import { parseReference } from '../registry/reference.js';
import { toPlatform } from '../oci/platform.js';
import { OciLayout } from '../source/oci-layout.js';
import { openNamedContexts } from './build-contexts.js';

export interface PlanOptions extends BuildDefinitionOptions {
  /** State directory whose local image store may know the base images (never written). */
  root?: string;
}

export interface PlannedStep {
  digest: Digest;
  name: string;
  type: Vertex['op']['type'];
  line?: number;
  /** RUN --mount: one line per mount (type, target, what it shows: ids, never a secret's value). */
  mounts?: string[];
}

export interface PlannedStage {
  /** Stage name, or `stage-N`. */
  name: string;
  index: number;
  /** `scratch`, the base stage, or the image reference (pinned when resolved locally). */
  base: string;
  /** The base image reference when it was not in the local store. */
  unresolved?: string;
  steps: PlannedStep[];
}

export interface PlanResult {
  compiled: CompileResult;
  stages: PlannedStage[];
  /** Image references that were not in the local store (their digests are placeholders). */
  unresolved: string[];
  warnings: CompileWarning[];
}

/** Marks placeholder digests of unresolved images: `sha256(unresolved:<ref>)`. */
function placeholderDigest(ref: string): Digest {
  return sha256(`unresolved:${ref}`);
}

/** Compiles without any network or execution. */
export async function plan(opts: PlanOptions): Promise<PlanResult> {
  const platform = opts.platform === undefined ? undefined : toPlatform(opts.platform);
  const input = await readBuildInput(opts.context, opts.dockerfile, opts.dockerfileText);
  const root = opts.root ?? defaultStateRoot();
  // Read only: neither store is initialised, and reads take no lock.
  const images = new ImageStore(root);
  const blobs = new ContentStore(root);
  const unresolved = new Map<string, string>();

  const resolveLocal = async (refText: string, p: Platform): Promise<ResolvedImage> => {
    const ref = parseReference(refText);
    const name = `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}`;
    try {
      const digest = (ref.digest as Digest | undefined) ?? (await images.resolve(name, p, blobs))?.digest;
      if (digest) {
        const manifest = await blobs.readJson<ImageManifest>(digest);
        return { ref: `${name}@${digest}`, config: await blobs.readJson<ImageConfigFile>(manifest.config.digest) };
      }
    } catch {
      // no local store, or not an image manifest we can read: unresolved
    }
    const pinned = `${name}@${placeholderDigest(name)}`;
    unresolved.set(pinned, name);
    const config: ImageConfigFile = { os: p.os, architecture: p.architecture, config: {}, rootfs: { type: 'layers', diff_ids: [] } };
    if (p.variant) config.variant = p.variant;
    return { ref: pinned, config };
  };

  // Read only: an OCI layout's image is named by its digest there (unresolved unless a build stored it).
  const named = opts.buildContexts
    ? await openNamedContexts(opts.buildContexts, async (path, pick) => {
        if ('digest' in pick) return pick.digest;
        const entry = await new OciLayout(path).entry(pick.tag, true);
        if (!entry) throw new Error(`OCI layout ${path}:${pick.tag}: no image by that tag in index.json`);
        return entry.digest;
      })
    : undefined;
  const compiled = await compile(input.dockerfile, compileOptions(input, opts, platform, resolveLocal, named));

  // A vertex is listed under the first stage that needs it, dependencies first (a stage comes
  // after the stages its root depends on in a post-order walk), then the stages are printed in
  // file order.
  const vertices = compiled.definition.vertices;
  const position = new Map<Digest, number>();
  const seen = new Set<Digest>();
  for (const stage of compiled.stages) for (const d of postOrder(vertices, stage.root, seen)) position.set(d, position.size);
  const byDependency = [...compiled.stages].sort((a, b) => (position.get(a.root) ?? 0) - (position.get(b.root) ?? 0));
  const assigned = new Set<Digest>();
  const stageNames = new Map(compiled.stages.map((s) => [s.root, `stage ${s.name ?? s.index}`]));
  const planned = new Map<number, PlannedStage>();
  for (const stage of byDependency) {
    const steps: PlannedStep[] = [];
    for (const digest of postOrder(vertices, stage.root, assigned)) {
      const v = vertices.get(digest) as Vertex;
      if (v.meta.hidden) continue;
      const mounts = v.op.type === 'exec' ? v.op.mounts?.map((m) => describeMount(m, v, vertices, stageNames)) : undefined;
      steps.push({ digest, name: v.meta.name, type: v.op.type, ...(v.meta.startLine ? { line: v.meta.startLine } : {}), ...(mounts ? { mounts } : {}) });
    }
    const base = unresolved.get(stage.base);
    planned.set(stage.index, {
      name: stage.name ?? `stage-${stage.index}`,
      index: stage.index,
      base: base ?? stage.base,
      ...(base ? { unresolved: base } : {}),
      steps,
    });
  }
  const stages = compiled.stages.map((s) => planned.get(s.index) as PlannedStage);
  return { compiled, stages, unresolved: [...new Set(unresolved.values())], warnings: compiled.warnings };
}

/**
 * The vertices reachable from `root` that are not in `seen` (which it extends), each after its
 * inputs. Iterative: a chain of steps is as deep as the Dockerfile is long.
 */
function postOrder(vertices: ReadonlyMap<Digest, Vertex>, root: Digest, seen: Set<Digest>): Digest[] {
  const out: Digest[] = [];
  if (seen.has(root)) return out;
  seen.add(root);
  const frames = [{ digest: root, next: 0 }];
  while (frames.length > 0) {
    const frame = frames[frames.length - 1] as (typeof frames)[number];
    const v = vertices.get(frame.digest);
    const input = v?.inputs[frame.next++];
    if (input === undefined) {
      frames.pop();
      if (v) out.push(frame.digest);
    } else if (!seen.has(input)) {
      seen.add(input);
      frames.push({ digest: input, next: 0 });
    }
  }
  return out;
}

/** A mount as the plan shows it; a bind or seeded cache names the stage, image or context it shows. */
function describeMount(m: ExecMount, step: Vertex, vertices: ReadonlyMap<Digest, Vertex>, stageNames: ReadonlyMap<Digest, string>): string {
  const from = (input: number, source: string | undefined): string => {
    const digest = step.inputs[input] as Digest;
    const op = vertices.get(digest)?.op;
    const what = op?.type === 'local' ? 'context' : op?.type === 'image' ? `image ${op.ref}` : (stageNames.get(digest) ?? digest);
    return ` from ${what}${source && source !== '/' ? ` path ${source}` : ''}`;
  };
  const flags = (...set: Array<string | false>) => set.filter((f): f is string => f !== false).map((f) => ` ${f}`).join('');
  switch (m.type) {
    case 'bind':
      return `bind ${m.target}${from(m.input, m.source)}${flags(!m.readonly && 'rw')}`;
    case 'cache':
      return `cache ${m.target} id=${m.id}${flags(m.sharing !== 'shared' && `sharing=${m.sharing}`, m.readonly && 'ro')}${m.input !== undefined ? from(m.input, m.source) : ''}`;
    case 'tmpfs':
      return `tmpfs ${m.target}${flags(m.size !== undefined && `size=${m.size}`)}`;
    case 'secret':
      return `secret id=${m.id}${flags(m.target !== undefined && `at ${m.target}`, m.env !== undefined && `env=${m.env}`, m.required && 'required')}`;
    case 'ssh':
      return `ssh id=${m.id} at ${m.target}${flags(m.required && 'required')}`;
  }
}

/** The plan as text: one block per stage, one line per step with its vertex digest (and its mounts below it). */
export function formatPlan(result: PlanResult): string {
  const out: string[] = [];
  for (const stage of result.stages) {
    const note = stage.unresolved ? ' (not in the local store: unresolved, its digest is a placeholder)' : '';
    out.push(`stage ${stage.index} ${stage.name}: FROM ${stage.base}${note}`);
    for (const step of stage.steps) {
      out.push(`  ${step.digest}  ${step.name}`);
      for (const mount of step.mounts ?? []) out.push(`      mount ${mount}`);
    }
  }
  out.push(`target: ${result.compiled.root}`);
  return `${out.join('\n')}\n`;
}
