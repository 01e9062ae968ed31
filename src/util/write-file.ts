// Replacing a file so that a reader never sees it half-written.

import { randomBytes } from 'node:crypto';
import { renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';

/** Writes `data` to a temporary file beside `file`, then renames it over `file`; nothing is left on failure. */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * writeFileAtomic for a small file in the state directory, where a thread-pool trip costs more
 * than the writing; `mode` as writeFileSync's (the umask applies).
 */
export function writeFileAtomicSync(file: string, data: string | Uint8Array, mode?: number): void {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, data, mode === undefined ? undefined : { mode });
    renameSync(tmp, file);
  } catch (err) {
    removeFileSync(tmp);
    throw err;
  }
}

/**
 * Removes the file `path` if it is there. rmSync(path, { force: true }) does the same, but loads
 * and runs Node's recursive remover for it, a cost on every command that opens the state.
 */
export function removeFileSync(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
