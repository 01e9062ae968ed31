// Naming this process so that files and locks it leaves behind can be told from those of a live
// owner after a crash (state locks, content-store writers, snapshots, mounts).

import { readFileSync } from 'node:fs';

/** Start time of a process in clock ticks since boot (/proc/PID/stat field 22), if it exists. */
function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parens: count fields after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

let ownToken: string | undefined;

/**
 * Names this process for crash cleanup: pid plus start time, so a later process that happens to
 * get the same pid (common in containers) is not mistaken for the owner.
 */
export function processToken(): string {
  ownToken ??= `${process.pid}.${processStartTime(process.pid) ?? '0'}`;
  return ownToken;
}

/** True when the process named by `token` (see processToken) is still running. */
export function isOwnerAlive(token: string): boolean {
  const m = /^(\d+)\.(\d+)$/.exec(token);
  if (!m) return false;
  return processStartTime(Number(m[1])) === m[2];
}
