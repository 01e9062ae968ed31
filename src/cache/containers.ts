// Containers `builder run` started: one record per name, `containers/<name>.json`, naming the
// image it ran and the active snapshot holding its writable layer. A record is created by
// linking a whole temporary file to its name, which fails when the name is taken: no two
// containers get one name, whichever processes start them. Updates replace it by rename.
//
// A container run with --rm goes (snapshot, then record) when it exits; one whose process died
// first is forgotten here the next time the records are read (its snapshot, still owned by that
// process, goes with the next build's sweep). Others stay, exited, until `builder rm`.

import { randomBytes } from 'node:crypto';
import { mkdir, link, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Digest } from '../oci/types.js';
import { isOwnerAlive } from '../util/process.js';

export interface ContainerRecord {
  /** 64 hex digits, as Docker's container IDs. */
  id: string;
  name: string;
  /** The image as it was asked for, and its ID (config digest). */
  image: string;
  imageId: Digest;
  command: string[];
  /** ISO 8601. */
  created: string;
  /** The active snapshot holding the container's filesystem. */
  snapshot: string;
  /** Removed when it exits (--rm). */
  remove: boolean;
  /** The process running it (processToken()), while it runs. */
  owner?: string;
  exitCode?: number;
  /** When it exited, ISO 8601. */
  finished?: string;
}

export class ContainerNameConflictError extends Error {
  constructor(readonly containerName: string, readonly holder: string) {
    super(`the container name "${containerName}" is already in use by container ${holder}: remove it (builder rm ${containerName}) to reuse the name`);
    this.name = 'ContainerNameConflictError';
  }
}

/** Docker's rule for container names. */
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

export function checkContainerName(name: string): void {
  if (!NAME.test(name)) throw new Error(`invalid container name "${name}": use at least two of [a-zA-Z0-9_.-], starting with a letter or digit`);
}

/** Whether the container's process is (still) running. */
export function isRunning(c: ContainerRecord): boolean {
  return c.owner !== undefined && isOwnerAlive(c.owner);
}

export class ContainerStore {
  private readonly dir: string;

  constructor(root: string) {
    this.dir = join(root, 'containers');
  }

  /** Records a new container; fails with ContainerNameConflictError when its name is taken. */
  async create(record: ContainerRecord): Promise<void> {
    checkContainerName(record.name);
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = await this.temp(record);
    try {
      for (;;) {
        try {
          await link(tmp, this.path(record.name));
          return;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
          const holder = await this.get(record.name);
          if (holder) throw new ContainerNameConflictError(record.name, holder.id);
          // Forgotten meanwhile (an --rm container whose process died): try again.
        }
      }
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async update(record: ContainerRecord): Promise<void> {
    await rename(await this.temp(record), this.path(record.name));
  }

  async delete(name: string): Promise<void> {
    await rm(this.path(name), { force: true });
  }

  /** Every container, oldest first. */
  async list(): Promise<ContainerRecord[]> {
    const names = (await readdir(this.dir).catch(() => [] as string[])).filter((n) => n.endsWith('.json'));
    const records = await Promise.all(names.map((n) => this.get(n.slice(0, -'.json'.length))));
    return records.filter((r): r is ContainerRecord => r !== undefined).sort((a, b) => a.created.localeCompare(b.created));
  }

  /** The container named `ref`, or whose ID is or starts with `ref` (as docker finds them). */
  async find(ref: string): Promise<ContainerRecord | undefined> {
    if (NAME.test(ref)) {
      const named = await this.get(ref);
      if (named) return named;
    }
    if (!/^[0-9a-f]+$/.test(ref)) return undefined;
    const matches = (await this.list()).filter((c) => c.id.startsWith(ref));
    if (matches.length > 1) throw new Error(`more than one container ID starts with ${ref}: give more of it`);
    return matches[0];
  }

  private async get(name: string): Promise<ContainerRecord | undefined> {
    let record: ContainerRecord;
    try {
      record = JSON.parse(await readFile(this.path(name), 'utf8')) as ContainerRecord;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new Error(`${this.path(name)}: unreadable container record: ${(err as Error).message}`);
    }
    if (record.remove && !isRunning(record)) {
      await this.delete(name);
      return undefined;
    }
    return record;
  }

  /** A temporary file holding `record`, named as the state directory's sweep recognises. */
  private async temp(record: ContainerRecord): Promise<string> {
    const tmp = join(this.dir, `${record.name}.${randomBytes(6).toString('hex')}.tmp`);
    await writeFile(tmp, JSON.stringify(record, null, 2), { mode: 0o600 });
    return tmp;
  }

  private path(name: string): string {
    return join(this.dir, `${name}.json`);
  }
}
