// Temporary files of the state directory's atomic writes: small records are written to
// `NAME.<12 hex>[.tmp]` and renamed to NAME, blobs are streamed into `ingest/`. A process killed
// between the write and the rename leaves one behind; nothing ever reads it. Only the holder of
// the state lock may remove them (their writer is then gone).

import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ContentStore } from './content-store.js';
import { isPreparedLock } from './lock.js';

const TEMP_NAME = /\.[0-9a-f]{12}(\.tmp)?$/;

/** Leftover temporary files (absolute paths) under state directory `root`. */
export async function temporaryFiles(root: string): Promise<string[]> {
  const list = async (dir: string): Promise<string[]> => readdir(dir).catch(() => [] as string[]);
  const compressed = join(root, 'compressed');
  const dirs = [root, join(root, 'cache', 'keys'), join(root, 'cache', 'steps'), join(root, 'cache', 'copies'), join(root, 'cache', 'context'), join(root, 'containers'), ...(await list(compressed)).map((d) => join(compressed, d))];
  const found: string[] = [];
  for (const dir of dirs) for (const name of await list(dir)) if (TEMP_NAME.test(name) && !isPreparedLock(name)) found.push(join(dir, name));
  // Blob writes of a writer that is gone (the content store also clears these when it opens).
  found.push(...(await new ContentStore(root).leftoverWrites()));
  return found;
}

/** Removes what temporaryFiles() finds; returns the paths removed. */
export async function removeTemporaryFiles(root: string): Promise<string[]> {
  const found = await temporaryFiles(root);
  for (const path of found) await rm(path, { recursive: true, force: true });
  return found;
}
