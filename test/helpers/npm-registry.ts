// A minimal npm registry on 127.0.0.1, for tests that run `npm install` / `npm ci` offline.
//
//   const npmReg = await startNpmRegistry([
//     { name: 'tiny-a', version: '1.0.0', size: 40_000 },
//     { name: 'tiny-b', version: '2.1.0', dependencies: { 'tiny-a': '^1.0.0' } },
//   ]);
//   ... npm ci --registry ${npmReg.url} ...
//   npmReg.served.filter((r) => r.kind === 'tarball')  // what was downloaded, with bytes
//   await npmReg.stop();
//
// It answers what npm asks for an install: `GET /<name>` (the packument, abbreviated when the
// Accept header asks for application/vnd.npm.install-v1+json, as npm does) and
// `GET /<name>/-/<basename>-<version>.tgz` (the tarball). Anything else (audit, search) is a 404,
// recorded like the rest. Each tarball is a gzipped tar of `package/package.json`, `package/index.js`
// (exporting name and version) and `package/payload.bin` (`size` random bytes, so byte counts
// measure downloads rather than compression), with `dist.integrity` (sha512) and `dist.shasum`
// (sha1) computed from its bytes.

import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { makeLayer } from '../snapshotter/helpers.js';

export interface NpmPackageSpec {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  /** Bytes of random payload in the tarball (default 16 KiB). */
  size?: number;
}

export interface ServedRequest {
  method: string;
  /** The request path as sent (`/tiny-a`, `/tiny-a/-/tiny-a-1.0.0.tgz`). */
  path: string;
  kind: 'packument' | 'tarball' | 'other';
  status: number;
  /** Body bytes sent. */
  bytes: number;
}

export interface NpmRegistry {
  /** `http://127.0.0.1:PORT/`, for `--registry`. */
  url: string;
  /** Every request answered, in order. */
  served: ServedRequest[];
  /** The tarball path of a package version (as in `served`), and its size in bytes. */
  tarball(name: string, version: string): { path: string; size: number };
  stop(): Promise<void>;
}

interface Published {
  spec: NpmPackageSpec;
  tgz: Buffer;
  path: string;
  integrity: string;
  shasum: string;
}

export async function startNpmRegistry(packages: NpmPackageSpec[]): Promise<NpmRegistry> {
  const byName = new Map<string, Published[]>();
  for (const spec of packages) {
    const tgz = await packageTarball(spec);
    const path = `/${spec.name}/-/${spec.name.split('/').pop()}-${spec.version}.tgz`;
    const published: Published = {
      spec,
      tgz,
      path,
      integrity: `sha512-${createHash('sha512').update(tgz).digest('base64')}`,
      shasum: createHash('sha1').update(tgz).digest('hex'),
    };
    byName.set(spec.name, [...(byName.get(spec.name) ?? []), published]);
  }
  const tarballs = new Map([...byName.values()].flat().map((p) => [p.path, p]));
  const served: ServedRequest[] = [];
  let url = '';

  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const answer = (kind: ServedRequest['kind'], status: number, type: string, body: Buffer) => {
      served.push({ method: req.method ?? '', path, kind, status, bytes: req.method === 'HEAD' ? 0 : body.length });
      res.writeHead(status, { 'content-type': type, 'content-length': body.length });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    const tarball = req.method === 'GET' || req.method === 'HEAD' ? tarballs.get(path) : undefined;
    if (tarball) return answer('tarball', 200, 'application/octet-stream', tarball.tgz);
    // Scoped names arrive as `/@scope%2fname`.
    const versions = req.method === 'GET' || req.method === 'HEAD' ? byName.get(decodeURIComponent(path.slice(1))) : undefined;
    if (versions) {
      const abbreviated = (req.headers.accept ?? '').includes('application/vnd.npm.install-v1+json');
      const body = Buffer.from(JSON.stringify(packument(versions, url, abbreviated)));
      return answer('packument', 200, abbreviated ? 'application/vnd.npm.install-v1+json' : 'application/json', body);
    }
    answer('other', 404, 'application/json', Buffer.from('{"error":"Not found"}'));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;

  return {
    url,
    served,
    tarball(name, version) {
      const p = byName.get(name)?.find((v) => v.spec.version === version);
      if (!p) throw new Error(`the npm registry has no ${name}@${version}`);
      return { path: p.path, size: p.tgz.length };
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // npm keeps connections alive; a client that is gone must not hold the server open.
        server.closeAllConnections();
      }),
  };
}

/**
 * The registry document for one package: every version with its dependencies and `dist`. The
 * abbreviated form ("corgi") is what npm asks for when installing; the full form adds the fields
 * `npm view` shows.
 */
function packument(versions: Published[], base: string, abbreviated: boolean): object {
  const name = versions[0]!.spec.name;
  const latest = versions[versions.length - 1]!.spec.version;
  const modified = new Date(0).toISOString();
  const entries = versions.map((p) => [
    p.spec.version,
    {
      name,
      version: p.spec.version,
      dependencies: p.spec.dependencies ?? {},
      dist: { tarball: `${base}${p.path.slice(1)}`, integrity: p.integrity, shasum: p.shasum },
      ...(abbreviated ? {} : { main: 'index.js', description: `${name} (a test package)` }),
    },
  ]);
  const doc = { name, modified, 'dist-tags': { latest }, versions: Object.fromEntries(entries) };
  return abbreviated ? doc : { ...doc, _id: name, time: { modified, ...Object.fromEntries(versions.map((p) => [p.spec.version, modified])) } };
}

function packageTarball(spec: NpmPackageSpec): Promise<Buffer> {
  const manifest = { name: spec.name, version: spec.version, main: 'index.js', dependencies: spec.dependencies ?? {} };
  return makeLayer([
    { name: 'package/package.json', content: JSON.stringify(manifest, null, 2) + '\n' },
    { name: 'package/index.js', content: `module.exports = ${JSON.stringify({ name: spec.name, version: spec.version })};\n` },
    { name: 'package/payload.bin', content: randomBytes(spec.size ?? 16 * 1024) },
  ]);
}
