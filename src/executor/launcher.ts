// Starting runc for RUN steps from a small long-lived process instead of from node.
//
// Node starts a program by forking itself: the kernel copies the page tables of its whole
// address space (100 MB and more during a build), node's thread then blocks until the child has
// exec'd (torn that copy down again), and every page node writes afterwards takes a copy-on-write
// fault. At one container per RUN step, on a machine with few cores, that competes with runc for
// the CPU. The launcher is one perl process (perl-base is Essential in Debian) of a few MB, forked
// once; it forks and execs each runc, relays its stdout and stderr, and reports its exit status.

import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { closeSync, existsSync, openSync } from 'node:fs';
import { constants as osc } from 'node:os';
import { Readable, type Writable } from 'node:stream';
import { lineSafe } from '../util/command.js';

/** What the executor uses of a started `runc run`: the part of ChildProcess a launched one also has. */
export interface StartedProcess {
  readonly stdout: Readable;
  readonly stderr: Readable;
  kill(signal?: NodeJS.Signals): boolean;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'close', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
}

// The launcher's protocol, one request per line on its stdin (arguments cannot hold a newline or
// a NUL: the caller checks with lineSafe):
//   r ID N\0FILE…\0PATH\0ARG…
//                        fork, exec PATH with ARGs (argv[0] = PATH), stdin /dev/null, and the N
//                        FILEs (`<path` read, `>path` write; N ≤ 3) open as fds 3, 4, 5
//   k ID SIGNAL          send a signal (by number) to run ID, unless it has been reaped
// and answers, framed on its stdout:
//   p ID PID\n           run ID started (exec'd)
//   o ID LEN\n<bytes>    LEN bytes of its stdout;  e ID LEN\n<bytes>: of its stderr
//   x ID STATUS\n        it exited (wait status); sent only after both its streams have ended
//   f ID ERRNO TEXT\n    it could not be started (pipe, fork or exec failed)
// Each run's output is relayed in order, and its exit comes after the last of it, as a child's
// 'close' does. The launcher ignores the signals sent to a whole process group (a terminal's
// Ctrl-C, a service manager's SIGTERM): the build stops its containers itself and needs the
// launcher to report them; runc gets the default dispositions back, so it sees them as it does
// when node starts it.
// When its stdin ends (node exited or was killed) it takes no more requests, lets the runs it
// started finish, as they would as node's own orphans, and exits.
const LAUNCHER = String.raw`
use strict;
# No modules (POSIX alone would treble this process's own memory, which every fork write-protects).
$SIG{$_} = 'IGNORE' for qw(INT QUIT TERM HUP PIPE);
my (%runs, %reader);
# Fds 3-5 (/dev/null from node) are kept for the files a run is given: every pipe is above them,
# and a child reopens them in place (perl dup2s onto an fd up to $^F).
my @slots = map { my $h; open($h, '<&=', $_) ? $h : () } 3 .. 5;
my ($in, $eof, $lost) = ('', 0, 0);
sub send_out {
  my ($s) = @_;
  while (!$lost && length $s) {
    my $w = syswrite(STDOUT, $s);
    if (!defined $w) { next if $!{EINTR}; $lost = 1; last }
    substr($s, 0, $w) = '';
  }
}
sub start {
  my ($id, $files, @argv) = @_;
  if (@$files > @slots) { send_out("f $id 22 files: only " . scalar(@slots) . " can be passed\n"); return }
  # Created close-on-exec (above $^F): only their copies on fds 1 and 2 reach runc.
  my ($or, $ow, $er, $ew, $sr, $sw);
  unless (pipe($or, $ow) && pipe($er, $ew) && pipe($sr, $sw)) { send_out("f $id " . ($! + 0) . " pipe: $!\n"); return }
  my $pid = fork;
  unless (defined $pid) { send_out("f $id " . ($! + 0) . " fork: $!\n"); return }
  if ($pid == 0) {
    $SIG{$_} = 'DEFAULT' for qw(INT QUIT TERM HUP PIPE);
    # Reopened in place (fds 0-2, not close-on-exec). Our stdin, the request pipe, must not reach
    # runc: without /dev/null, no exec.
    my $failed = $argv[0];
    if (open(STDIN, '<', '/dev/null') && open(STDOUT, '>&', $ow) && open(STDERR, '>&', $ew)) {
      $^F = 5;
      my $opened = 0;
      for my $file (@$files) {
        unless (open($slots[$opened], substr($file, 0, 1), substr($file, 1))) { $failed = substr($file, 1); last }
        $opened++;
      }
      exec { $argv[0] } @argv if $opened == @$files;
    }
    syswrite($sw, ($! + 0) . " $failed: $!");
    exit 127; # nothing is buffered (all output is syswrite) and there is no END block
  }
  close $ow; close $ew; close $sw;
  # Until exec, then end of file (close-on-exec); an error text if exec failed.
  my $err = '';
  1 while !defined sysread($sr, $err, 512) && $!{EINTR};
  close $sr;
  if (length $err) { waitpid($pid, 0); close $or; close $er; send_out("f $id $err\n"); return }
  $runs{$id} = { pid => $pid, open => 2 };
  $reader{fileno $or} = [$id, 'o', $or];
  $reader{fileno $er} = [$id, 'e', $er];
  send_out("p $id $pid\n");
}
sub request {
  my ($line) = @_;
  if ($line =~ /^r (\d+) (\d+)\0(.+)$/s) {
    my ($id, $n, @rest) = ($1, $2, split /\0/, $3, -1);
    start($id, [splice(@rest, 0, $n)], @rest);
  }
  # Only while not reaped: the pid cannot have been reused.
  elsif ($line =~ /^k (\d+) (\d+)$/) { kill($2, $runs{$1}{pid}) if $runs{$1} }
}
while (!$eof || %runs) {
  # A run whose streams have ended is reaped as soon as it has exited (usually at once).
  my $waiting = 0;
  for my $id (keys %runs) {
    my $run = $runs{$id};
    next if $run->{open};
    if (waitpid($run->{pid}, 1) > 0) { send_out("x $id $?\n"); delete $runs{$id} } # 1: WNOHANG
    else { $waiting = 1 }
  }
  last if $eof && !%runs;
  my $rin = '';
  vec($rin, 0, 1) = 1 unless $eof;
  vec($rin, $_, 1) = 1 for keys %reader;
  my $n = select(my $rout = $rin, undef, undef, $waiting ? 0.001 : undef);
  die "select: $!" if $n < 0 && !$!{EINTR};
  next if $n <= 0;
  for my $fd (keys %reader) {
    next unless vec($rout, $fd, 1);
    my ($id, $stream, $fh) = @{$reader{$fd}};
    my $got = sysread($fh, my $buf, 65536);
    next if !defined $got && $!{EINTR};
    if ($got) { send_out("$stream $id $got\n$buf"); next }
    close $fh;
    delete $reader{$fd};
    $runs{$id}{open}--;
  }
  if (!$eof && vec($rout, 0, 1)) {
    my $got = sysread(STDIN, $in, 65536, length $in);
    next if !defined $got && $!{EINTR};
    if (!$got) { $eof = 1; next }
    while ((my $nl = index($in, "\n")) >= 0) { request(substr($in, 0, $nl)); substr($in, 0, $nl + 1) = '' }
  }
}`;

/** A file a run gets open as one of its fds from 3 on: for reading, or (`write`) created for writing. */
export interface PassedFile {
  path: string;
  write?: boolean;
}

/** A run started through the launcher, seen as a child process. */
class LaunchedRun extends EventEmitter implements StartedProcess {
  readonly stdout = new Readable({ read() {} });
  readonly stderr = new Readable({ read() {} });
  pid: number | undefined;
  private done = false;

  constructor(private readonly signalRun: (signal: number) => boolean) {
    super();
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    return !this.done && this.signalRun(osc.signals[signal]);
  }

  /** Both streams end; 'close' follows once their data is consumed, as a child process's does. */
  exited(status: number): void {
    this.done = true;
    const code = (status & 0x7f) === 0 ? status >> 8 : null;
    const signal = code === null ? signalName(status & 0x7f) : null;
    let open = 2;
    const ended = (): void => {
      if (--open === 0) this.emit('close', code, signal);
    };
    for (const s of [this.stdout, this.stderr]) {
      s.once('end', ended);
      s.push(null);
    }
  }

  failed(err: Error): void {
    if (this.done) return;
    this.done = true;
    this.stdout.push(null);
    this.stderr.push(null);
    this.emit('error', err);
  }
}

function signalName(n: number): NodeJS.Signals | null {
  return (Object.entries(osc.signals).find(([, num]) => num === n)?.[0] as NodeJS.Signals | undefined) ?? null;
}

/**
 * The launcher process, started on first use; one per node process. It keeps nothing alive while
 * no run is in progress. If it cannot start or dies, every run in progress fails with an error and
 * `launch` returns undefined from then on (the caller starts runc itself).
 */
export class RuncLauncher {
  private static shared: RuncLauncher | undefined | null = null;
  private child: ChildProcessByStdio<Writable, Readable, null> | undefined;
  private broken = false;
  private nextId = 1;
  private readonly runs = new Map<number, LaunchedRun>();
  private pending: Buffer | undefined;

  private constructor(private readonly perl: string) {}

  /** The process's launcher, or undefined where there is no perl. */
  static get(): RuncLauncher | undefined {
    if (RuncLauncher.shared === null) {
      const perl = ['/usr/bin/perl', '/bin/perl'].find((p) => existsSync(p));
      RuncLauncher.shared = perl ? new RuncLauncher(perl) : undefined;
    }
    return RuncLauncher.shared;
  }

  /** False once it has failed to start or died (then callers start runc themselves). */
  usable(): boolean {
    return !this.broken;
  }

  /** Whether the launcher process has been started (and has not died). */
  running(): boolean {
    return this.child !== undefined;
  }

  /** Starts the launcher now if it is not running (ahead of the first run). */
  warm(): void {
    if (!this.broken) this.child ??= this.start();
  }

  /**
   * Runs `path` with `args` (stdin /dev/null) and `files` open as its fds 3, 4, 5 (see
   * PassedFile), or undefined when the launcher cannot be used.
   */
  launch(path: string, args: readonly string[], files: readonly PassedFile[] = []): StartedProcess | undefined {
    const fileArgs = files.map((f) => `${f.write ? '>' : '<'}${f.path}`);
    if (this.broken || files.length > 3 || !lineSafe([path, ...args, ...fileArgs])) return undefined;
    const child = (this.child ??= this.start());
    if (child.stdin.destroyed) return undefined;
    const id = this.nextId++;
    const run = new LaunchedRun((signal) => {
      if (this.child !== child || child.stdin.destroyed) return false;
      child.stdin.write(`k ${id} ${signal}\n`);
      return true;
    });
    this.runs.set(id, run);
    this.setRef(true);
    child.stdin.write(`r ${id} ${files.length}\0${[...fileArgs, path, ...args].join('\0')}\n`);
    return run;
  }

  private start(): ChildProcessByStdio<Writable, Readable, null> {
    // In our process group, as a runc spawned by node would be (a terminal's Ctrl-C reaches it).
    // Fds 3-5: placeholders for the files a run is given (see LAUNCHER).
    const devNull = openSync('/dev/null', 'r');
    let child: ChildProcessByStdio<Writable, Readable, null>;
    try {
      child = spawn(this.perl, ['-e', LAUNCHER], {
        stdio: ['pipe', 'pipe', 'ignore', devNull, devNull, devNull],
        // For runc's own process, which mostly waits for its container: with one P, the Go runtime
        // starts no threads that spin for work beside the container's start (3 ms of a 70 ms
        // `runc run` on two cores). Its container process never sees runc's environment.
        env: { ...process.env, GOMAXPROCS: '1' },
      }) as ChildProcessByStdio<Writable, Readable, null>;
    } finally {
      closeSync(devNull);
    }
    child.stdout.on('data', (chunk: Buffer) => this.onData(chunk));
    const fail = (why: string): void => {
      this.broken = true;
      if (this.child === child) this.child = undefined;
      const err = new Error(`runc launcher: ${why}`);
      for (const run of this.runs.values()) run.failed(err);
      this.runs.clear();
    };
    child.on('error', (err) => fail(err.message));
    child.on('close', (code, signal) => fail(`exited (${signal ?? `status ${code}`})`));
    child.stdin.on('error', () => undefined); // reported through 'close'
    child.unref();
    this.child = child;
    this.setRef(false);
    return child;
  }

  /** Parses the launcher's frames (see LAUNCHER). */
  private onData(chunk: Buffer): void {
    let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = undefined;
    let at = 0;
    for (;;) {
      const nl = buf.indexOf(10, at);
      if (nl < 0) break;
      const header = buf.toString('latin1', at, nl);
      const [kind, idText, value] = header.split(' ', 3) as [string, string, string];
      const run = this.runs.get(Number(idText));
      if (kind === 'o' || kind === 'e') {
        const end = nl + 1 + Number(value);
        if (end > buf.length) break;
        // A copy: the chunk goes on to code that may keep it, and buf may be a concatenation.
        run?.[kind === 'o' ? 'stdout' : 'stderr'].push(Buffer.from(buf.subarray(nl + 1, end)));
        at = end;
        continue;
      }
      at = nl + 1;
      if (!run) continue;
      if (kind === 'p') run.pid = Number(value);
      else if (kind === 'x') {
        this.runs.delete(Number(idText));
        run.exited(Number(value));
      } else if (kind === 'f') {
        this.runs.delete(Number(idText));
        const [errno, ...text] = header.slice(`f ${idText} `.length).split(' ');
        const code = Object.entries(osc.errno).find(([, n]) => n === Number(errno))?.[0];
        run.failed(Object.assign(new Error(`spawn ${text.join(' ')}`), code ? { code, errno: -Number(errno) } : {}));
      }
    }
    if (at < buf.length) this.pending = buf.subarray(at);
    if (this.runs.size === 0) this.setRef(false);
  }

  /** Keeps the process alive only while a run is in progress. */
  private setRef(on: boolean): void {
    const child = this.child;
    if (!child) return;
    (on ? child.ref : child.unref).call(child);
    for (const s of [child.stdin, child.stdout] as Array<{ ref?(): void; unref?(): void }>) (on ? s.ref : s.unref)?.call(s);
  }
}
