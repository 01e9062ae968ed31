// What a build context PATH or a `--build-context NAME=SOURCE` names: a directory, an image
// (`docker-image://REF`), an OCI layout's image (`oci-layout://DIR[:TAG|@DIGEST]`), or a source
// not supported yet (stdin, Git, a URL). Kept apart from input.ts (which loads the Dockerfile
// parser) so that the command line can check flags before loading anything.

import type { Digest } from '../definition/index.js';

/**
 * Why a build context `path` cannot be used yet, when it is not a local directory: a tar on
 * stdin (`-`), a Git repository or a URL (docker's urlutil: `git@`, `git://`, `github.com/`, an
 * http(s) URL ending in `.git`).
 */
export function unsupportedContext(path: string): string | undefined {
  if (path === '-') return 'a build context read from stdin ("-") is not supported yet: give a directory';
  if (/^(git@|git:\/\/|github\.com\/)/.test(path) || /^https?:\/\/\S*\.git(#.*)?$/.test(path)) {
    return `a Git repository as build context ("${path}") is not supported yet: clone it and give the directory`;
  }
  if (/^https?:\/\//.test(path)) return `a URL as build context ("${path}") is not supported yet: download it and give the directory`;
  return undefined;
}

/** Where a named build context comes from. */
export type BuildContextSource =
  /** A directory, read as the build context is (its own `.dockerignore` applies). */
  | { type: 'local'; path: string }
  /** An image, resolved and pulled as a base image is. */
  | { type: 'image'; ref: string }
  /** The image of an OCI image layout named `tag` (default `latest`) or with manifest (or index) `digest`. */
  | { type: 'oci-layout'; path: string; tag?: string; digest?: Digest };

/** `NAME=PATH`, `NAME=docker-image://REF`, `NAME=oci-layout://DIR[:TAG|@DIGEST]`, as buildx takes them. */
export function parseBuildContext(value: string): { name: string; source: BuildContextSource } {
  const eq = value.indexOf('=');
  if (eq <= 0 || eq === value.length - 1) throw new Error(`invalid --build-context "${value}": expected NAME=PATH, NAME=docker-image://REF or NAME=oci-layout://DIR`);
  const name = value.slice(0, eq);
  const spec = value.slice(eq + 1);
  if (spec.startsWith('docker-image://')) return { name, source: { type: 'image', ref: spec.slice('docker-image://'.length) } };
  if (spec.startsWith('oci-layout://')) {
    const m = /^(.*?)(?:@(sha256:[0-9a-f]{64}))?$/.exec(spec.slice('oci-layout://'.length))!;
    const tagAt = m[1]!.lastIndexOf(':');
    const hasTag = tagAt > m[1]!.lastIndexOf('/');
    const path = hasTag ? m[1]!.slice(0, tagAt) : m[1]!;
    if (path === '') throw new Error(`invalid --build-context "${value}": oci-layout:// needs the layout's directory`);
    return { name, source: { type: 'oci-layout', path, ...(hasTag ? { tag: m[1]!.slice(tagAt + 1) } : {}), ...(m[2] ? { digest: m[2] as Digest } : {}) } };
  }
  const remote = unsupportedContext(spec);
  if (remote) throw new Error(`invalid --build-context "${value}": ${remote}`);
  return { name, source: { type: 'local', path: spec } };
}
