// What a stopped, killed or failed build may leave, seen from outside: the registry's view of a
// tag (asked over its HTTP API), the local store's names, and the integrity check's findings.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { doctor, type DoctorIssue } from '../../src/client/doctor.js';
import { mountsUnder } from './cli.js';

const MANIFEST_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';

/**
 * The manifest a registry serves for `repo:tag`, and which of the blobs it names the registry
 * does not have; undefined when the tag does not exist.
 */
export async function registryTag(host: string, repo: string, tag: string): Promise<{ digest: string; missingBlobs: string[] } | undefined> {
  const res = await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, { headers: { accept: MANIFEST_ACCEPT } });
  if (res.status === 404) return undefined;
  if (res.status !== 200) throw new Error(`GET manifest ${repo}:${tag}: ${res.status}`);
  const manifest = (await res.json()) as { config: { digest: string }; layers: Array<{ digest: string }> };
  const missingBlobs: string[] = [];
  for (const { digest } of [manifest.config, ...manifest.layers]) {
    const head = await fetch(`http://${host}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
    if (head.status !== 200) missingBlobs.push(digest);
  }
  return { digest: res.headers.get('docker-content-digest') ?? '', missingBlobs };
}

/** Names in the local image store of state directory `root`. */
export function localTags(root: string): string[] {
  try {
    const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')) as { manifests: Array<{ annotations?: Record<string, string> }> };
    return index.manifests.map((d) => d.annotations?.['org.opencontainers.image.ref.name'] ?? '');
  } catch {
    return [];
  }
}

/** The integrity check's findings, as printable lines, split into damage and leftovers. */
export async function checkState(root: string): Promise<{ problems: string[]; leftovers: string[] }> {
  if (!existsSync(root)) return { problems: [], leftovers: [] }; // stopped before it made one
  const { issues } = await doctor({ root });
  const line = (i: DoctorIssue): string => `${i.path}: ${i.message}`;
  return { problems: issues.filter((i) => !i.leftover).map(line), leftovers: issues.filter((i) => i.leftover).map(line) };
}

/**
 * Everything a build could leave behind, for `root` and the TMPDIR its builds ran with: issues
 * the integrity check reports (runc containers included), mount points under `root` as this
 * process sees them, temporary files and directories.
 */
export async function leftBehind(root: string, tmp?: string): Promise<string[]> {
  const { problems, leftovers } = await checkState(root);
  return [
    ...problems,
    ...leftovers,
    ...mountsUnder(root).map((p) => `mount ${p}`),
    ...(tmp ? readdirSync(tmp).map((n) => `temporary ${join(tmp, n)}`) : []),
  ];
}
