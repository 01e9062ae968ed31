// Whether something is at a path: the question many callers ask before they create or read it.

import { stat } from 'node:fs/promises';

/** True when `path` names an existing file or directory (following a symlink). */
export function pathExists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
