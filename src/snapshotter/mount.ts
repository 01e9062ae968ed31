// Mounting (Node has no mount syscall): through one long-lived perl process that makes the
// syscalls (see MOUNT_LOOP), else through the `mount`/`umount` commands.
//
// Overlay options travel to the kernel in one page (legacy mount(2) copies at most PAGE_SIZE
// bytes of data), so a long lowerdir chain can overflow it. Like containerd, when the options
// get too long we mount from the common parent directory of the layer dirs and pass
// relative paths, which the kernel resolves against the caller's working directory.

import { execFileSync } from 'node:child_process';
import { existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { mkdirSync, mkdtempSync, rmdirSync } from 'node:fs';
import { realpath, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { CommandError, CommandShell, lineSafe, runShort } from '../util/command.js';
import { processToken } from '../util/process.js';
import type { Mount } from './types.js';

/** Mount data is copied into one page; keep room for the kernel's own NUL. */
const MAX_MOUNT_DATA = 4095;

const PATH_OPTIONS = ['lowerdir', 'upperdir', 'workdir'] as const;

interface MountCommand {
  args: string[];
  cwd?: string;
}

export function mountCommand(m: Mount, target: string): MountCommand {
  if (m.type === 'bind') return { args: ['-o', m.options.join(','), m.source, target] };
  const data = m.options.join(',');
  if (m.type !== 'overlay' || Buffer.byteLength(data) <= MAX_MOUNT_DATA) {
    return { args: ['-t', m.type, '-o', data, m.source, target] };
  }
  const compact = compactOverlayOptions(m.options);
  const compactData = compact.options.join(',');
  if (Buffer.byteLength(compactData) > MAX_MOUNT_DATA) {
    const layers = (m.options.find((o) => o.startsWith('lowerdir='))?.split(':').length) ?? 0;
    throw new Error(
      `overlay mount options are ${Buffer.byteLength(compactData)} bytes even with relative paths ` +
        `(limit ${MAX_MOUNT_DATA}, ${layers} lower layers): too many layers`,
    );
  }
  return { args: ['-t', m.type, '-o', compactData, m.source, target], cwd: compact.cwd };
}

/** Rewrites lowerdir/upperdir/workdir relative to their longest common parent directory. */
export function compactOverlayOptions(options: readonly string[]): { cwd: string; options: string[] } {
  const paths: string[] = [];
  for (const o of options) {
    const [k, v] = splitOption(o);
    if (v !== undefined && (PATH_OPTIONS as readonly string[]).includes(k)) paths.push(...v.split(':'));
  }
  const cwd = commonDir(paths);
  const rewritten = options.map((o) => {
    const [k, v] = splitOption(o);
    if (v === undefined || !(PATH_OPTIONS as readonly string[]).includes(k)) return o;
    return `${k}=${v.split(':').map((p) => relative(cwd, p) || '.').join(':')}`;
  });
  return { cwd, options: rewritten };
}

function splitOption(o: string): [string, string | undefined] {
  const i = o.indexOf('=');
  return i < 0 ? [o, undefined] : [o.slice(0, i), o.slice(i + 1)];
}

function commonDir(paths: string[]): string {
  if (paths.length === 0) return '/';
  let common = dirname(paths[0]!);
  for (const p of paths) {
    while (common !== '/' && !(p === common || p.startsWith(common + sep))) common = dirname(common);
  }
  return common;
}

/** Mounts `mounts` on top of each other at `target`; on failure nothing stays mounted. */
export async function mountAll(mounts: readonly Mount[], target: string): Promise<void> {
  let done = 0;
  try {
    for (const m of mounts) {
      clearVolatileMark(m);
      const cmd = mountCommand(m, target);
      const request = syscallRequest(m, target, cmd);
      const syscalls = request && lineSafe([...request.args, cmd.cwd ?? '/']) ? mountSyscalls() : undefined;
      if (request && syscalls) {
        await syscalls.run(request.op, request.args, cmd.cwd ?? '/');
      } else {
        const [bin, pre] = m.type === 'overlay' ? mountTool() : ['mount', []];
        await runShort(bin, [...pre, ...cmd.args], cmd.cwd ? { cwd: cmd.cwd } : {});
      }
      done++;
    }
  } catch (err) {
    if (done > 0) await unmountAll(target).catch(() => undefined);
    throw err;
  }
}

/** The request for the mount syscall server that makes `m`, if it can (see MOUNT_LOOP). */
function syscallRequest(m: Mount, target: string, cmd: MountCommand): { op: 'mount' | 'bind'; args: string[] } | undefined {
  // mountCommand's args end with `-o DATA SOURCE TARGET`.
  if (m.type === 'overlay' && m.options.every(isOverlayData)) return { op: 'mount', args: [m.type, cmd.args.at(-2)!, target, cmd.args.at(-3)!] };
  if (m.type === 'bind' && m.options.includes('rbind') && m.options.every((o) => ['rbind', 'ro', 'rw'].includes(o))) return { op: 'bind', args: [m.source, target, m.options.includes('ro') ? 'ro' : 'rw'] };
  return undefined;
}

/**
 * mount(2), umount2(2) and mknodat(2) made by one long-lived perl process (perl-base is Essential
 * in Debian), which forks nothing: starting even a static `mount` costs about 10 ms of CPU where
 * process creation is slow (virtual machines), a mount and an unmount per RUN or COPY step; a new
 * state directory's overlay probe needs a whiteout (mknod), layers with whiteouts one each. Reads the
 * runShort line protocol, each request in its directory (relative overlay paths):
 *   mount TYPE SOURCE TARGET DATA   no flags (overlay options are all data)
 *   bind SOURCE TARGET ro|rw        MS_BIND|MS_REC, then read-only by a remount as mount(8) does
 *                                   (undone if that fails)
 *   umount TARGET
 *   mknod PATH MODE DEV             mknodat(2) (the umask applies, as to mknod(1))
 *   seal PATH                       copies a file into a memfd sealed against any change
 *                                   (F_SEAL_SEAL|SHRINK|GROW|WRITE), kept open here; answers
 *                                   /proc/<pid>/fd/<n> (see sealedCopy)
 *   topdir PATH                     adds FS_TOPDIR_FL to a directory's inode flags
 *                                   (FS_IOC_GETFLAGS/SETFLAGS, see markTopDirectory)
 */
const MOUNT_LOOP = `
my ($MOUNT, $UMOUNT, $MKNODAT, $MEMFD) = @ARGV;
$| = 1;
my @sealed;
sub seal {
  my ($path) = @_;
  open(my $in, '<:raw', $path) or return -1;
  # MFD_ALLOW_SEALING|MFD_EXEC, or without MFD_EXEC on kernels before 6.3 (EINVAL).
  my $name = 'sealed';
  my $fd = syscall($MEMFD, $name, 2 | 16);
  $fd = syscall($MEMFD, $name, 2) if $fd < 0 && $! == 22;
  return -1 if $fd < 0;
  open(my $mem, '+<&=', $fd) or return -1;
  binmode $mem;
  # In pieces: this process stays small.
  while (1) {
    my $got = sysread($in, my $buf, 262144);
    return -1 unless defined $got;
    last if $got == 0;
    for (my $off = 0; $off < $got;) {
      my $w = syswrite($mem, $buf, $got - $off, $off);
      return -1 unless $w;
      $off += $w;
    }
  }
  # Exactly these seals, and executable: anything else (vm.memfd_noexec) is refused.
  return -1 unless fcntl($mem, 1033, 15) && fcntl($mem, 1034, 0) == 15 && -x "/proc/self/fd/$fd";
  push @sealed, $mem;
  return $fd;
}
# The flags are an int, whatever the request numbers' size says; the buffer has room for a long.
sub topdir {
  sysopen(my $dir, $_[0], 0) or return -1;
  my $flags = pack('Q', 0);
  ioctl($dir, 0x80086601, $flags) or return -1;
  $flags = pack('L', unpack('L', $flags) | 0x20000) . pack('L', 0);
  return ioctl($dir, 0x40086602, $flags) ? 0 : -1;
}
while (defined(my $n = <STDIN>)) {
  chomp $n;
  chomp(my $dir = <STDIN>);
  my @a = map { my $l = <STDIN>; chomp $l; $l } 1 .. $n;
  my $op = shift @a;
  my $r = -1;
  my $answer = '';
  if (!chdir $dir) {}
  elsif ($op eq 'mount' && @a == 4) { $r = syscall($MOUNT, $a[1], $a[2], $a[0], 0, $a[3]) }
  elsif ($op eq 'bind' && @a == 3) {
    $r = syscall($MOUNT, $a[0], $a[1], 0, 4096 | 16384, 0);
    if ($r == 0 && $a[2] eq 'ro') {
      $r = syscall($MOUNT, $a[0], $a[1], 0, 4096 | 32 | 1, 0);
      if ($r != 0) { my $e = $! + 0; syscall($UMOUNT, $a[1], 0); $! = $e }
    }
  }
  elsif ($op eq 'umount' && @a == 1) { $r = syscall($UMOUNT, $a[0], 0) }
  elsif ($op eq 'mknod' && @a == 3) { $r = syscall($MKNODAT, -100, $a[0], $a[1] + 0, $a[2] + 0) }
  elsif ($op eq 'seal' && @a == 1) { my $fd = seal($a[0]); $r = $fd < 0 ? -1 : 0; $answer = "/proc/$$/fd/$fd" }
  elsif ($op eq 'topdir' && @a == 1) { $r = topdir($a[0]) }
  else { $! = 22 }
  my $out = $r == 0 ? $answer : "$op: $!";
  print(($r == 0 ? 0 : 1) . ' ' . length($out) . "\n" . $out);
}`;

/** Numbers of mount(2), umount2(2), mknodat(2) and memfd_create(2) by Node's process.arch (x86_64, and asm-generic's). */
const SYSCALL_NUMBERS: Partial<Record<string, [mount: number, umount2: number, mknodat: number, memfdCreate: number]>> = {
  x64: [165, 166, 259, 319],
  arm64: [40, 39, 33, 279],
  riscv64: [40, 39, 33, 279],
};

let syscallServer: CommandShell | undefined | null = null;
function mountSyscalls(): CommandShell | undefined {
  if (syscallServer === null) {
    const numbers = SYSCALL_NUMBERS[process.arch];
    const perl = ['/usr/bin/perl', '/bin/perl'].find((p) => existsSync(p));
    syscallServer = numbers && perl ? new CommandShell(perl, ['-e', MOUNT_LOOP, ...numbers.map(String)]) : undefined;
  }
  return syscallServer;
}

const FILE_TYPE_BITS = { c: 0o020000, b: 0o060000, p: 0o010000 } as const;

/**
 * Creates a device node or FIFO at absolute `path` with mode 0666 less the umask, as mknod(1)
 * does, through the syscall server; false when there is none or the device number does not fit
 * mknodat's (then the caller runs mknod(1)). Throws the syscall's error.
 */
export async function mknodSyscall(path: string, kind: 'c' | 'b' | 'p', major: number, minor: number): Promise<boolean> {
  // The kernel's 32-bit dev_t encoding (new_encode_dev): 12 bits of major, 20 of minor.
  if (major > 0xfff || minor > 0xfffff || !lineSafe([resolve(path)])) return false;
  const syscalls = mountSyscalls();
  if (!syscalls) return false;
  const dev = (minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12);
  try {
    await syscalls.run('mknod', [resolve(path), String(FILE_TYPE_BITS[kind] | 0o666), String(dev >>> 0)], '/');
  } catch (err) {
    // Named as mknod(1) would be: the request's mode and dev numbers say little to a reader.
    if (err instanceof CommandError) throw new CommandError('mknod', kind === 'p' ? [path, 'p'] : [path, kind, String(major), String(minor)], err.exitCode, err.stderr);
    throw err;
  }
  return true;
}

/**
 * Marks directory `path` as the top of unrelated directory trees (FS_TOPDIR_FL, `chattr +T`):
 * ext4 then places each new subdirectory in a block group of its own choosing (Orlov) instead
 * of its parent's, where inodes freed moments ago sit. Without a journal, ext4 skips every
 * inode freed within the dirty-expire interval (30 s by default), scanning past all of them
 * again for each new inode: after a large delete (a prune, the previous state directory) a
 * cold COPY's file creation took 4-8 times longer. Only a hint: false where it cannot be set
 * (other file systems, no syscall server).
 */
export async function markTopDirectory(path: string): Promise<boolean> {
  const syscalls = lineSafe([path]) ? mountSyscalls() : undefined;
  if (!syscalls) return false;
  return syscalls.run('topdir', [resolve(path)], '/').then(
    () => true,
    () => false,
  );
}

/**
 * An executable path to a copy of file `path` that nothing can change: a memfd sealed against
 * writes, resizes and further seals, held open for the life of this process. runc execs itself
 * into every container's init and, to keep a container from overwriting the host's runc through
 * /proc/self/exe, first clones itself (a bind mount dance and a second exec) unless it already
 * runs from such a memfd; started from one, it skips that on every run. Undefined when it cannot
 * be made here (no syscall server, no memfd_create, unreadable file).
 */
export async function sealedCopy(path: string): Promise<string | undefined> {
  const syscalls = lineSafe([path]) ? mountSyscalls() : undefined;
  if (!syscalls) return undefined;
  let served: string;
  try {
    served = await syscalls.run('seal', [path], '/');
  } catch {
    return undefined;
  }
  // Our own descriptor: the copy outlives the syscall server (and is ours to hand out).
  try {
    const fd = openSync(served, 'r');
    return `/proc/${process.pid}/fd/${fd}`;
  } catch {
    return undefined;
  }
}

/** An overlay option that is mount data, not a mount flag (`ro`, `nosuid`… need mount's parsing). */
function isOverlayData(option: string): boolean {
  return option.includes('=') || option === 'volatile' || option === 'userxattr';
}

/**
 * The static busybox `mount`/`umount` start in a third of the time of util-linux's (which load
 * libmount and lock utab). Without perl, used for overlay mounts and all unmounts when present;
 * util-linux otherwise, and for other mounts (read-only binds need its remount step).
 */
let busybox: string | undefined | null = null;
function mountTool(): [string, string[]] {
  if (busybox === null) busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p) && hasApplets(p));
  return busybox ? [busybox, ['mount']] : ['mount', []];
}
function umountTool(): [string, string[]] {
  mountTool();
  return busybox ? [busybox, ['umount']] : ['umount', []];
}
function hasApplets(bin: string): boolean {
  try {
    const list = execFileSync(bin, ['--list'], { encoding: 'utf8' }).split('\n');
    return list.includes('mount') && list.includes('umount');
  } catch {
    return false;
  }
}

/**
 * A `volatile` overlay leaves `<workdir>/work/incompat/volatile` behind and refuses to mount
 * again while it exists; the previous mount of that upper dir is gone, so it can go.
 */
function clearVolatileMark(m: Mount): void {
  if (m.type !== 'overlay' || !m.options.includes('volatile')) return;
  const workdir = m.options.find((o) => o.startsWith('workdir='))?.slice('workdir='.length);
  if (workdir) rmSync(join(workdir, 'work', 'incompat'), { recursive: true, force: true });
}

/** Unmounts everything mounted at `target` (stacked mounts included). Retries while busy. */
export async function unmountAll(target: string): Promise<void> {
  const path = await realpath(target).catch(() => target);
  let failures = 0;
  // Usually exactly one mount: unmount first, look at the mount table afterwards.
  let known = true;
  for (;;) {
    if (!known && (await mountCountAt(path)) === 0) return;
    known = false;
    try {
      const syscalls = mountSyscalls();
      if (syscalls && lineSafe([path])) await syscalls.run('umount', [path], '/');
      else {
        const [bin, pre] = umountTool();
        await runShort(bin, [...pre, path]);
      }
      failures = 0;
    } catch (err) {
      if ((await mountCountAt(path)) === 0) return; // it was not mounted (any more)
      // EBUSY right after a container exits is usually transient (a process still exiting).
      if (++failures > 20) throw err;
      await new Promise((r) => setTimeout(r, 25 * failures));
    }
  }
}

/** Mount points in this mount namespace, decoded from /proc/self/mountinfo. */
export async function listMountPoints(): Promise<string[]> {
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (field) out.push(field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}

async function mountCountAt(path: string): Promise<number> {
  return (await listMountPoints()).filter((p) => p === path).length;
}

export async function isMountPoint(path: string): Promise<boolean> {
  const real = await realpath(path).catch(() => path);
  return (await mountCountAt(real)) > 0;
}

export interface WithMountsOptions {
  /** Directory in which the temporary mount point is made; by default `<snapshotter root>/mounts`. */
  mountRoot?: string;
  /**
   * Return as soon as `fn` succeeds and unmount in the background, for writable snapshot mounts
   * (an overlay upper dir or a read-write bind): the caller diffs the snapshot while the unmount
   * runs. The snapshotter's commit() and remove() of that snapshot wait for it (see
   * settleUnmount); errors surface there. Read-only mounts and failures unmount at once.
   */
  deferUnmount?: boolean;
}

/** Background unmounts of writable snapshot dirs (their `fs` path) still running. */
const pendingUnmounts = new Map<string, Promise<void>>();

/** The writable snapshot dir of `mounts`, if any: what commit/remove must wait for. */
function writableDir(mounts: readonly Mount[]): string | undefined {
  for (const m of mounts) {
    const upper = m.options.find((o) => o.startsWith('upperdir='));
    if (upper) return upper.slice('upperdir='.length);
    if (m.type === 'bind' && m.options.includes('rw')) return m.source;
  }
  return undefined;
}

/** Waits for a deferred unmount of snapshot dir `dir` (no-op when there is none); rethrows its error. */
export async function settleUnmount(dir: string): Promise<void> {
  const pending = pendingUnmounts.get(dir);
  if (pending) await pending;
}

/**
 * Mounts `mounts` at a fresh temporary directory, runs `fn` on it and always unmounts and
 * removes the directory, even when `fn` throws. The directory is named after this process so a later
 * `sweep()` can tell leftovers of dead processes from mounts in use.
 */
export async function withMounts<T>(
  mounts: readonly Mount[],
  fn: (dir: string) => Promise<T>,
  opts: WithMountsOptions = {},
): Promise<T> {
  const base = opts.mountRoot ?? mountRootFor(mounts);
  mkdirSync(base, { recursive: true });
  const dir = mkdtempSync(join(base, `${processToken()}-`));
  try {
    await mountAll(mounts, dir);
  } catch (err) {
    try {
      rmdirSync(dir);
    } catch {
      // leave it to sweep()
    }
    throw err;
  }
  let outcome: { ok: true; value: T } | { ok: false; error: unknown };
  try {
    outcome = { ok: true, value: await fn(dir) };
  } catch (error) {
    outcome = { ok: false, error };
  }
  const writable = opts.deferUnmount && outcome.ok ? writableDir(mounts) : undefined;
  if (outcome.ok && writable !== undefined && !pendingUnmounts.has(writable)) {
    const pending = (async () => {
      try {
        await unmountAll(dir);
        await rmdir(dir); // in the thread pool: slow on some filesystems, and nobody waits for it but commit
      } finally {
        pendingUnmounts.delete(writable);
      }
    })();
    pending.catch(() => undefined); // observed by settleUnmount
    pendingUnmounts.set(writable, pending);
    return outcome.value;
  }
  try {
    await unmountAll(dir);
    rmdirSync(dir);
  } catch (cleanupError) {
    // Both failing: report both; a leaked mount must not go unnoticed.
    if (!outcome.ok) throw new AggregateError([outcome.error, cleanupError], `${String(outcome.error)}; then unmounting ${dir} failed`);
    throw cleanupError;
  }
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
}

/** Mounts made from our snapshots go under the snapshotter root (`ROOT/snapshots/<id>/fs` → `ROOT/mounts`). */
export function mountRootFor(mounts: readonly Mount[]): string {
  for (const m of mounts) {
    const candidates = [m.source];
    for (const o of m.options) {
      const [k, v] = splitOption(o);
      if (v !== undefined && (PATH_OPTIONS as readonly string[]).includes(k)) candidates.push(...v.split(':'));
    }
    for (const c of candidates) {
      const match = /^(\/.*)\/snapshots\/[^/]+\/fs$/.exec(c);
      if (match?.[1]) return join(match[1], 'mounts');
    }
  }
  return join(tmpdir(), 'builder-mounts');
}
