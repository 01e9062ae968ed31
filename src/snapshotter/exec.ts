// Runs the few system commands Node has no syscall for (mount, umount, mknod).

import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    /** Set when the command could not be started at all (e.g. ENOENT: not installed). */
    readonly spawnError?: string,
  ) {
    super(`${command} ${args.join(' ')} failed${exitCode !== null ? ` (exit ${exitCode})` : ''}: ${stderr.trim() || 'no output'}`);
    this.name = 'CommandError';
  }
}

export function runCommand(command: string, args: readonly string[], opts: { cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd: opts.cwd, encoding: 'utf8', maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const code = typeof err.code === 'number' ? err.code : null;
        const spawnError = typeof err.code === 'string' ? err.code : undefined;
        reject(new CommandError(command, args, code, stderr || err.message, spawnError));
      } else {
        resolve(stdout);
      }
    });
  });
}

/** Creates a device node or fifo (Node has no mknod). */
export async function mknod(path: string, kind: 'c' | 'b' | 'p', major = 0, minor = 0): Promise<void> {
  const args = kind === 'p' ? [path, 'p'] : [path, kind, String(major), String(minor)];
  await runCommand('mknod', args);
}

/** Linux dev_t split (glibc's gnu_dev_major/minor), on a Number-sized rdev. */
export function devMajor(rdev: number): number {
  return ((Math.floor(rdev / 2 ** 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & 0xfffff000)) >>> 0;
}

export function devMinor(rdev: number): number {
  return ((rdev & 0xff) | (Math.floor(rdev / 2 ** 12) & 0xffffff00)) >>> 0;
}

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
