// ADD's archive extraction: a local source that is a tar archive (plain, gzip, bzip2 or xz,
// recognised by its content, never its name) is unpacked into the destination directory instead
// of being copied. Entries are written as root would, but never outside the destination: names
// are cleaned, parents that are symlinks are resolved inside the root (resolveInRoot), hardlinks
// must point inside the root, and device nodes are skipped.

import { createReadStream } from 'node:fs';
import { chmod, lchown, link, lstat, lutimes, mkdir, open, rm, symlink, utimes } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Duplex, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { mkdirAll, type Owner } from './copy.js';
import { commandFilter } from '../../util/command.js';
import { resolveInRoot } from '../../util/scoped-path.js';
import { writeSparseSync } from '../../snapshotter/fsutil.js';

export type ArchiveKind = 'tar' | 'gzip' | 'bzip2' | 'xz';

/** The archive kind of a file from its first bytes, or undefined when it is not an archive. */
export async function archiveKind(path: string): Promise<ArchiveKind | undefined> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(512);
    const { bytesRead } = await fh.read(head, 0, 512, 0);
    const b = head.subarray(0, bytesRead);
    if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
    if (b.length >= 3 && b.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
    if (b.length >= 6 && b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
    // A tar header: "ustar" at offset 257 (POSIX and GNU).
    if (b.length >= 262 && b.subarray(257, 262).toString('latin1') === 'ustar') return 'tar';
    return undefined;
  } finally {
    await fh.close();
  }
}

/** bzip2 and xz through their commands (Node has no decoder for them). */
function commandDecompressor(command: string): Duplex {
  return commandFilter(command, ['-d', '-c', '-q'], { missing: `ADD of a ${command} archive needs the ${command} command`, label: `${command} -d` });
}

/**
 * Extracts archive `file` into the directory `dest` (an image path) of `root`. `owner`, when
 * set (ADD --chown), replaces the owners recorded in the archive.
 */
export async function extractArchive(file: string, kind: ArchiveKind, root: string, dest: string, owner?: Owner): Promise<void> {
  await mkdirAll(root, dest, 0o755, owner ?? { uid: 0, gid: 0 });
  const extract = tar.extract();
  const dirTimes: Array<{ path: string; mtime: Date }> = [];
  const done = (async () => {
    for await (const entry of extract) {
      const h = entry.header;
      const rel = posix.normalize(`/${h.name}`).replace(/^\/+/, '').replace(/\/+$/, '');
      if (rel === '' || rel === '.') {
        entry.resume();
        continue;
      }
      const imagePath = posix.join(dest, rel);
      const parent = await resolveInRoot(root, posix.dirname(imagePath));
      await mkdir(parent, { recursive: true });
      const host = join(parent, posix.basename(imagePath));
      const uid = owner?.uid ?? h.uid ?? 0;
      const gid = owner?.gid ?? h.gid ?? 0;
      const mode = (h.mode ?? 0o644) & 0o7777;
      const mtime = h.mtime ?? new Date(0);
      const existing = await lstat(host).catch(() => undefined);
      if (existing && !(existing.isDirectory() && h.type === 'directory')) await rm(host, { recursive: true, force: true });
      switch (h.type) {
        case 'directory':
          if (!existing?.isDirectory()) await mkdir(host);
          await lchown(host, uid, gid);
          await chmod(host, mode);
          dirTimes.push({ path: host, mtime });
          entry.resume();
          break;
        case 'file':
        case 'contiguous-file': {
          const fh = await open(host, 'wx', 0o600);
          try {
            // Zero runs stay holes, as in a layer apply.
            let pos = 0;
            for await (const chunk of entry) {
              writeSparseSync(fh.fd, chunk as Buffer, pos);
              pos += (chunk as Buffer).length;
            }
            await fh.truncate(pos);
          } finally {
            await fh.close();
          }
          await lchown(host, uid, gid);
          await chmod(host, mode);
          await utimes(host, mtime, mtime);
          break;
        }
        case 'symlink':
          await symlink(h.linkname ?? '', host);
          await lchown(host, uid, gid);
          await lutimes(host, mtime, mtime);
          entry.resume();
          break;
        case 'link': {
          const target = posix.normalize(`/${h.linkname ?? ''}`).replace(/^\/+/, '');
          const targetHost = await resolveInRoot(root, posix.join(dest, target));
          await link(targetHost, host);
          entry.resume();
          break;
        }
        default:
          // devices, fifos and the like are not created (ADD runs unprivileged in BuildKit too)
          entry.resume();
      }
    }
  })();
  const source = createReadStream(file);
  const stages: Array<Readable | Duplex | NodeJS.WritableStream> = [source];
  if (kind === 'gzip') stages.push(createGunzip());
  else if (kind === 'bzip2') stages.push(commandDecompressor('bzip2'));
  else if (kind === 'xz') stages.push(commandDecompressor('xz'));
  await Promise.all([pipeline([...stages, extract] as unknown as [Readable, NodeJS.WritableStream]), done]);
  for (const d of dirTimes.reverse()) await utimes(d.path, d.mtime, d.mtime);
}
