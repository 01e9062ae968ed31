// Running other programs: a command to completion (runCommand), short system commands through
// one long-lived shell (runShort: mount, umount, mknod, which Node has no syscall for), and a
// command as a stream stage (commandFilter: the compressors Node 20 lacks). Every failure is a
// CommandError or an Error naming the command, its exit code and its stderr.
// Knows nothing of what the commands are for.

import { execFile, spawn, type ChildProcessByStdio } from 'node:child_process';
import { Duplex, PassThrough, type Readable, type Writable } from 'node:stream';

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
  if (!lineSafe([command, ...args, opts.cwd ?? ''])) {
    return runCommand(command, args, opts).then(() => undefined);
  }
  shell ??= new CommandShell('/bin/sh', ['-c', SHELL_LOOP]);
  return shell.run(command, args, opts.cwd ?? '/').then(() => undefined);
}

let shell: CommandShell | undefined;

/** Whether `args` can travel over a line protocol (CommandShell's): no newline, no NUL. */
export function lineSafe(args: readonly string[]): boolean {
  return !args.some((a) => a.includes('\n') || a.includes('\0'));
}

// Reads "<argc>\n<cwd>\n<arg>\n…" and answers "<status> <output bytes>\n<output>" (stdout and
// stderr together, trailing newlines dropped). CommandShell speaks this to any program.
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
  resolve(output: string): void;
  reject(err: Error): void;
}

/**
 * One long-lived process answering requests over the line protocol of SHELL_LOOP: `/bin/sh` for
 * runShort, or another interpreter that serves requests without forking (see snapshotter/mount.ts).
 * Arguments must not contain a newline or NUL.
 */
export class CommandShell {
  private child: ChildProcessByStdio<Writable, Readable, null> | undefined;
  private readonly waiting: ShellRequest[] = [];
  private received = '';

  constructor(
    private readonly program: string,
    private readonly programArgs: readonly string[],
  ) {}

  /** Runs one request; resolves with what it printed (a successful request usually prints nothing). */
  run(command: string, args: readonly string[], cwd: string): Promise<string> {
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
    const child = spawn(this.program, this.programArgs, { stdio: ['pipe', 'pipe', 'ignore'], detached: true, env: { ...process.env, LC_ALL: 'C' } });
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
      if (status === 0) r.resolve(output);
      else r.reject(new CommandError(r.command, r.args, status, output || (status === 127 ? `${r.command}: not found` : ''), status === 127 ? 'ENOENT' : undefined));
    }
  }

  /** Keeps the process alive only while a command is running. */
  private setRef(on: boolean): void {
    const streams = [this.child?.stdin, this.child?.stdout] as Array<(Writable | Readable) & { ref?(): void; unref?(): void } | undefined>;
    for (const s of streams) (on ? s?.ref : s?.unref)?.call(s);
  }
}

/**
 * A command as a pipeline stage: what is written to the Duplex is the command's stdin, what is
 * read is its stdout. The stage fails with `missing` (plus the cause) when the command cannot
 * be started, and with `<label> failed (exit N): <stderr>` when it exits non-zero; its output
 * ends only once the command has exited, so a failure at the very end is not lost. Destroying
 * the stage before its output ends (an aborted pipeline) kills the command.
 */
export function commandFilter(command: string, args: readonly string[], messages: { missing: string; label?: string }): Duplex {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const output = new PassThrough();
  child.stdout.pipe(output, { end: false });
  child.on('close', (code) => {
    if (code !== 0 && code !== null) output.destroy(new Error(`${messages.label ?? command} failed (exit ${code}): ${stderr.trim()}`));
    else output.end();
  });
  const duplex = Duplex.from({ writable: child.stdin, readable: output });
  child.on('error', (err) => duplex.destroy(new Error(`${messages.missing}: ${err.message}`)));
  duplex.on('close', () => {
    if (!duplex.readableEnded) child.kill();
  });
  return duplex;
}
