// Shared fixtures for the frontend tests: a fake image resolver (the injected I/O boundary) and
// helpers to look at a compiled Definition.

import { createHash } from 'node:crypto';
import type { ContainerConfig, ImageConfigFile } from '../../src/oci/types.js';
import type { Definition, ExecOp, FileOp, Op, Vertex } from '../../src/definition/index.js';
import { compile, parseDockerfile, type CompileOptions, type CompileResult, type ImageResolver } from '../../src/frontend/index.js';

export const linuxAmd64 = { os: 'linux', architecture: 'amd64' } as const;

/** Base images the fake registry knows, by name without tag. */
export const baseConfigs: Record<string, ContainerConfig> = {
  alpine: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'] },
  node: {
    Env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'NODE_VERSION=20.11.0'],
    Entrypoint: ['docker-entrypoint.sh'],
    Cmd: ['node'],
    WorkingDir: '/srv',
    User: 'node',
  },
  nopath: { Cmd: ['true'] },
};

export function fakeResolver(extra: Record<string, ContainerConfig> = {}): ImageResolver & { calls: string[] } {
  const calls: string[] = [];
  const resolve = async (ref: string, platform: { os: string; architecture: string }) => {
    calls.push(ref);
    const name = ref.replace(/[:@].*$/, '');
    const config = extra[name] ?? baseConfigs[name];
    if (!config) throw new Error(`pull access denied for ${name}: repository does not exist`);
    const digest = createHash('sha256').update(ref).digest('hex');
    const tag = ref.includes(':') ? ref.slice(ref.indexOf(':') + 1) : 'latest';
    const image: ImageConfigFile = {
      os: platform.os,
      architecture: platform.architecture,
      config: structuredClone(config),
      rootfs: { type: 'layers', diff_ids: [`sha256:${digest}`] },
      history: [{ created_by: `/bin/sh -c #(nop) ADD file:${name} in /` }],
    };
    return { ref: `docker.io/library/${name}:${tag}@sha256:${digest}`, config: image };
  };
  return Object.assign(resolve, { calls });
}

export async function build(text: string, opts: Partial<CompileOptions> = {}): Promise<CompileResult> {
  return compile(parseDockerfile(text, opts.file ?? 'Dockerfile'), {
    file: 'Dockerfile',
    buildArgs: {},
    platform: linuxAmd64,
    resolveImage: fakeResolver(),
    dockerignore: [],
    ...opts,
  });
}

export function vertices(def: Definition): Vertex[] {
  return [...def.vertices.values()];
}

export function ops<T extends Op['type']>(def: Definition, type: T): Array<Extract<Op, { type: T }>> {
  return vertices(def)
    .map((v) => v.op)
    .filter((op): op is Extract<Op, { type: T }> => op.type === type);
}

export function execs(def: Definition): ExecOp[] {
  return ops(def, 'exec');
}

export function fileOps(def: Definition): FileOp[] {
  return ops(def, 'file');
}

/** The vertex compiled from the instruction starting on `line`. */
export function vertexAt(result: CompileResult, line: number): Vertex {
  const found = vertices(result.definition).find((v) => v.meta.startLine === line);
  if (!found) throw new Error(`no vertex for line ${line}`);
  return found;
}

export function digestAt(result: CompileResult, line: number): string {
  for (const [digest, v] of result.definition.vertices) if (v.meta.startLine === line) return digest;
  throw new Error(`no vertex for line ${line}`);
}

/** `KEY=value` entries of an exec op's env, as an object. */
export function envOf(op: ExecOp): Record<string, string> {
  return Object.fromEntries(op.env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
}

/** The error a promise rejects with. */
export async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the promise to reject');
}
