// Runs the few system commands Node has no syscall for (mount, umount, mknod).

import { execFile, spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
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

/**
 * Like runCommand for short commands whose output only matters on failure (mount, umount,
 * mknod), but run by one long-lived /bin/sh instead of a fork of this process each time: forking
 * Node blocks its main thread for about a millisecond per 50 MB of memory, and a RUN step needs
 * a mount and an unmount. Arguments with a newline (which the line protocol cannot carry) go
 * through runCommand.
 */
export function runShort(command: string, args: readonly string[], opts: { cwd?: string } = {}): Promise<void> {
  if ([command, ...args, opts.cwd ?? ''].some((a) => a.includes('\n') || a.includes('\0'))) {
    return runCommand(command, args, opts).then(() => undefined);
  }
  shell ??= new CommandShell();
  return shell.run(command, args, opts.cwd ?? '/');
}

let shell: CommandShell | undefined;

// Reads "<argc>\n<cwd>\n<arg>\n…" and answers "<status> <output bytes>\n<output>" (stdout and
// stderr together, trailing newlines dropped).
const SHELL_LOOP = `
while IFS= read -r n; do
  IFS= read -r dir
  set --
  while [ "$n" -gt 0 ]; do IFS= read -r a; set -- "$@" "$a"; n=$((n - 1)); done
  out=$(cd "$dir" && "$@" 2>&1 </dev/null)
  printf '%s %s\n%s' "$?" "\${#out}" "$out"
done`;

interface ShellRequest {
  command: string;
  args: readonly string[];
  resolve(): void;
  reject(err: Error): void;
}

class CommandShell {
  private child: ChildProcessByStdio<Writable, Readable, null> | undefined;
  private readonly waiting: ShellRequest[] = [];
  private received = '';

  run(command: string, args: readonly string[], cwd: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = this.child ?? this.start();
      this.waiting.push({ command, args, resolve, reject });
      this.setRef(true);
      child.stdin.write([String(args.length + 1), cwd, command, ...args, ''].join('\n'));
    });
  }

  private start(): ChildProcessByStdio<Writable, Readable, null> {
    // Its own process group, so a Ctrl-C meant for the build does not kill it before the build
    // has unmounted; it ends when our end of its stdin closes. Bytes are counted in the C locale.
    const child = spawn('/bin/sh', ['-c', SHELL_LOOP], { stdio: ['pipe', 'pipe', 'ignore'], detached: true, env: { ...process.env, LC_ALL: 'C' } });
    this.child = child;
    child.stdout.setEncoding('latin1');
    child.stdout.on('data', (text: string) => this.onData(text));
    const fail = (why: string): void => {
      if (this.child === child) this.child = undefined;
      this.received = '';
      for (const r of this.waiting.splice(0)) r.reject(new CommandError(r.command, r.args, null, why));
    };
    child.on('error', (err) => fail(`command shell failed: ${err.message}`));
    child.on('close', () => fail('command shell exited'));
    child.stdin.on('error', () => undefined); // reported through 'close'
    child.unref();
    return child;
  }

  private onData(text: string): void {
    this.received += text;
    for (;;) {
      const m = /^(\d+) (\d+)\n/.exec(this.received);
      if (!m) return;
      const end = m[0].length + Number(m[2]);
      if (this.received.length < end) return;
      const output = Buffer.from(this.received.slice(m[0].length, end), 'latin1').toString('utf8');
      this.received = this.received.slice(end);
      const r = this.waiting.shift();
      if (this.waiting.length === 0) this.setRef(false);
      if (!r) continue;
      const status = Number(m[1]);
      if (status === 0) r.resolve();
      else r.reject(new CommandError(r.command, r.args, status, output || (status === 127 ? `${r.command}: not found` : ''), status === 127 ? 'ENOENT' : undefined));
    }
  }

  /** Keeps the process alive only while a command is running. */
  private setRef(on: boolean): void {
    const streams = [this.child?.stdin, this.child?.stdout] as Array<(Writable | Readable) & { ref?(): void; unref?(): void } | undefined>;
    for (const s of streams) (on ? s?.ref : s?.unref)?.call(s);
  }
}

/** Creates a device node or fifo (Node has no mknod). */
export async function mknod(path: string, kind: 'c' | 'b' | 'p', major = 0, minor = 0): Promise<void> {
  const args = kind === 'p' ? [path, 'p'] : [path, kind, String(major), String(minor)];
  await runShort('mknod', args);
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
