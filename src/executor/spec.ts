// The OCI runtime config.json for one RUN step, with Docker's defaults (moby's
// oci/defaults.go and caps/defaults.go): capabilities, seccomp, masked and read-only paths,
// mounts. `RUN --security=insecure` gets BuildKit's insecure spec instead.

import type { ExtraHost, Ulimit } from '../definition/index.js';
import { DEFAULT_PATH } from '../oci/types.js';
import { defaultSeccompProfile, type LinuxSeccomp } from './seccomp.js';
import type { ResolvedUser } from './user.js';

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

export interface OciHook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

/** The subset of the OCI runtime spec that we generate. */
export interface OciRuntimeSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids?: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: { bounding: string[]; effective: string[]; permitted: string[]; inheritable: string[]; ambient: string[] };
    noNewPrivileges: boolean;
    rlimits?: Array<{ type: string; hard: number; soft: number }>;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  hooks?: { createContainer?: OciHook[] };
  annotations?: Record<string, string>;
  linux: {
    namespaces: Array<{ type: string; path?: string }>;
    maskedPaths: string[];
    readonlyPaths: string[];
    resources: { devices: Array<{ allow: boolean; access: string; type?: string; major?: number; minor?: number }> };
    devices?: Array<{ path: string; type: string; major: number; minor: number; fileMode: number }>;
    seccomp?: LinuxSeccomp;
  };
}

/** Docker's default capability set. */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** Every capability, by bit number (linux/capability.h). */
export const ALL_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ',
  'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

/** The capability names in a `CapEff:`-style hex mask of /proc/<pid>/status. */
export function capabilitiesInMask(hex: string): string[] {
  const mask = BigInt(`0x${hex}`);
  return ALL_CAPABILITIES.filter((_, bit) => (mask >> BigInt(bit)) & 1n);
}

/** Device nodes an insecure step gets, as BuildKit adds them (kmsg, fuse, tun, loop devices…). */
const INSECURE_DEVICES = [
  { path: '/dev/kmsg', type: 'c', major: 1, minor: 11, fileMode: 0o644 },
  { path: '/dev/cuse', type: 'c', major: 10, minor: 203, fileMode: 0o600 },
  { path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o666 },
  { path: '/dev/kvm', type: 'c', major: 10, minor: 232, fileMode: 0o660 },
  { path: '/dev/net/tun', type: 'c', major: 10, minor: 200, fileMode: 0o666 },
  { path: '/dev/loop-control', type: 'c', major: 10, minor: 237, fileMode: 0o660 },
  ...Array.from({ length: 8 }, (_, i) => ({ path: `/dev/loop${i}`, type: 'b', major: 7, minor: i, fileMode: 0o660 })),
];

export const DEFAULT_MASKED_PATHS = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

export const DEFAULT_READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export interface SpecInput {
  rootfs: string;
  args: string[];
  env: string[];
  cwd: string;
  user: ResolvedUser;
  hostname: string;
  network: 'none' | 'host';
  /**
   * `sandbox` (default): Docker's capabilities and seccomp profile. `insecure`: privileged, as
   * BuildKit's RUN --security=insecure: `hostCapabilities`, no seccomp, no masked paths, all devices.
   */
  security?: 'sandbox' | 'insecure';
  /** The capabilities an insecure step gets: the builder's own (default: all of them). */
  hostCapabilities?: string[];
  /** Host files bind-mounted read-only over /etc/hosts, /etc/resolv.conf, /etc/hostname. */
  etcFiles: { hosts: string; resolvConf: string; hostname: string };
  /** Mounted after the standard ones, in order (RUN --mount): a target may be under an earlier one. */
  mounts?: OciMount[];
  annotations?: Record<string, string>;
  /** Resource limits of the process (`nofile` …); without them it inherits the builder's. */
  ulimits?: Ulimit[];
  /** Bytes of /dev/shm (default 64 MiB, as Docker). */
  shmSize?: number;
  /** A pseudo-terminal for the process (`builder run -t`). */
  terminal?: boolean;
}

/** Fills in PATH and HOME when the environment does not set them (as Docker does). */
export function withDefaultEnv(env: readonly string[], home: string): string[] {
  const out = [...env];
  if (!out.some((e) => e.startsWith('PATH='))) out.unshift(`PATH=${DEFAULT_PATH}`);
  if (!out.some((e) => e.startsWith('HOME='))) out.push(`HOME=${home}`);
  return out;
}

export function buildSpec(input: SpecInput): OciRuntimeSpec {
  const namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (input.network === 'none') namespaces.push({ type: 'network' });
  const insecure = input.security === 'insecure';
  const caps = insecure ? [...(input.hostCapabilities ?? ALL_CAPABILITIES)] : [...DEFAULT_CAPABILITIES];
  const spec: OciRuntimeSpec = {
    ociVersion: '1.0.2',
    process: {
      terminal: input.terminal === true,
      user: { uid: input.user.uid, gid: input.user.gid, ...(input.user.additionalGids.length ? { additionalGids: input.user.additionalGids } : {}) },
      args: input.args,
      env: input.env,
      cwd: input.cwd,
      // No inheritable or ambient capabilities (Docker since 20.10.14, CVE-2022-24769); BuildKit's
      // insecure mode grants them all in every set.
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: insecure ? caps : [], ambient: insecure ? caps : [] },
      noNewPrivileges: true,
      ...(input.ulimits ? { rlimits: input.ulimits.map((u) => ({ type: `RLIMIT_${u.name.toUpperCase()}`, soft: u.soft, hard: u.hard })) } : {}),
    },
    root: { path: input.rootfs, readonly: false },
    hostname: input.hostname,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro', 'nosuid', 'noexec', 'nodev', 'relatime'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', input.shmSize !== undefined ? `size=${input.shmSize}` : 'size=65536k'] },
      { destination: '/etc/hosts', type: 'bind', source: input.etcFiles.hosts, options: ['rbind', 'ro'] },
      { destination: '/etc/resolv.conf', type: 'bind', source: input.etcFiles.resolvConf, options: ['rbind', 'ro'] },
      { destination: '/etc/hostname', type: 'bind', source: input.etcFiles.hostname, options: ['rbind', 'ro'] },
      ...(input.mounts ?? []),
    ],
    linux: {
      namespaces,
      maskedPaths: [...DEFAULT_MASKED_PATHS],
      readonlyPaths: [...DEFAULT_READONLY_PATHS],
      // Deny all devices; runc adds its default allow-list (null, zero, full, tty, random, urandom, ptmx).
      resources: { devices: [{ allow: false, access: 'rwm' }] },
    },
  };
  if (insecure) {
    spec.linux.maskedPaths = [];
    spec.linux.readonlyPaths = [];
    spec.linux.resources.devices = [{ allow: true, type: 'c', access: 'rwm' }, { allow: true, type: 'b', access: 'rwm' }];
    spec.linux.devices = INSECURE_DEVICES.map((d) => ({ ...d }));
    // Writable sysfs and cgroupfs.
    for (const m of spec.mounts) if (m.type === 'sysfs' || m.type === 'cgroup') m.options = m.options.filter((o) => o !== 'ro');
  } else {
    spec.linux.seccomp = defaultSeccompProfile(caps);
  }
  // network none: a fresh network namespace whose loopback runc itself brings up (its spec
  // conversion adds a "loopback" network for a new netns), as Docker's none network has it.
  if (input.annotations) spec.annotations = input.annotations;
  return spec;
}

/** /etc/hosts as BuildKit writes it: its two lines, then one per `--add-host`. */
export function hostsFile(hostname: string, extraHosts: readonly ExtraHost[] = []): string {
  const extra = extraHosts.map((h) => `${h.ip}\t${h.host}\n`).join('');
  return `127.0.0.1\tlocalhost ${hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n${extra}`;
}

/**
 * The host's resolv.conf; without the host network, loopback nameservers would point at the
 * container's own (empty) loopback, so they are dropped.
 */
export function resolvConf(hostResolvConf: string, network: 'none' | 'host'): string {
  if (network === 'host') return hostResolvConf;
  return hostResolvConf
    .split('\n')
    .filter((l) => !/^\s*nameserver\s+(127\.|::1\s*$)/.test(l))
    .join('\n');
}
