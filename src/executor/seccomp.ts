// Docker's default seccomp profile (moby's profiles/seccomp/default.json) as data, and its
// resolution into the OCI `linux.seccomp` of one container, as moby's setupSeccomp does it: the
// rules for other architectures, for capabilities the container lacks, or for newer kernels drop out.

import { release } from 'node:os';

export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: 'SCMP_CMP_EQ' | 'SCMP_CMP_NE' | 'SCMP_CMP_MASKED_EQ';
}

export interface SeccompSyscall {
  names: string[];
  action: 'SCMP_ACT_ALLOW' | 'SCMP_ACT_ERRNO';
  errnoRet?: number;
  args?: SeccompArg[];
}

/** The OCI runtime spec's `linux.seccomp`. */
export interface LinuxSeccomp {
  defaultAction: 'SCMP_ACT_ERRNO';
  defaultErrnoRet: number;
  architectures: string[];
  syscalls: SeccompSyscall[];
}

interface Rule extends Partial<SeccompSyscall> {
  names: string[];
  /** Only on one of `arches`, for a container with all of `caps`, on a kernel of at least `minKernel`. */
  includes?: { arches?: string[]; caps?: string[]; minKernel?: [number, number] };
  /** Not on any of `arches`, nor for a container with any of `caps`. */
  excludes?: { arches?: string[]; caps?: string[] };
}

const EPERM = 1;
const ENOSYS = 38;
/** CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET */
const CLONE_NAMESPACE_FLAGS = 0x7e020000;

const words = (text: string): string[] => text.trim().split(/\s+/);

/** Allowed for every container. */
const ALWAYS_ALLOWED = words(`
  accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
  clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
  clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2
  dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
  epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
  fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl
  fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64
  fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_time64 futex_waitv
  futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid
  getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid
  getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list
  getrusage getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32
  getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl
  io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup
  io_submit io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule
  landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat listen
  listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise membarrier
  memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2
  mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
  mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall
  munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open
  pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl
  pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev
  pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64
  recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq
  rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
  rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
  sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
  sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
  sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
  semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid
  setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid
  setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit
  set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr
  shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn
  socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync
  sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun
  timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime
  timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit
  umask uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4
  waitid waitpid write writev
`);

const eq = (index: number, value: number): SeccompArg => ({ index, value, op: 'SCMP_CMP_EQ' });

const RULES: Rule[] = [
  { names: ALWAYS_ALLOWED },
  { names: ['process_vm_readv', 'process_vm_writev', 'ptrace'], includes: { minKernel: [4, 8] } },
  // Any socket family but AF_VSOCK.
  { names: ['socket'], args: [{ index: 0, value: 40, op: 'SCMP_CMP_NE' }] },
  // Only the personalities programs ask for in practice: PER_LINUX, PER_LINUX32, UNAME26 variants, query.
  ...[0x0, 0x8, 0x20000, 0x20008, 0xffffffff].map((p): Rule => ({ names: ['personality'], args: [eq(0, p)] })),
  { names: ['sync_file_range2', 'swapcontext'], includes: { arches: ['ppc64le'] } },
  { names: ['arm_fadvise64_64', 'arm_sync_file_range', 'sync_file_range2', 'breakpoint', 'cacheflush', 'set_tls'], includes: { arches: ['arm', 'arm64'] } },
  { names: ['arch_prctl'], includes: { arches: ['amd64', 'x32'] } },
  { names: ['modify_ldt'], includes: { arches: ['amd64', 'x32', 'x86'] } },
  { names: ['s390_pci_mmio_read', 's390_pci_mmio_write', 's390_runtime_instr'], includes: { arches: ['s390', 's390x'] } },
  { names: ['riscv_flush_icache'], includes: { arches: ['riscv64'] } },
  { names: ['open_by_handle_at'], includes: { caps: ['CAP_DAC_READ_SEARCH'] } },
  {
    names: words(`bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr
      move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog umount umount2 unshare`),
    includes: { caps: ['CAP_SYS_ADMIN'] },
  },
  // Without CAP_SYS_ADMIN: clone only without namespace flags (flags are argument 1 on s390).
  { names: ['clone'], args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, op: 'SCMP_CMP_MASKED_EQ' }], excludes: { caps: ['CAP_SYS_ADMIN'], arches: ['s390', 's390x'] } },
  { names: ['clone'], args: [{ index: 1, value: CLONE_NAMESPACE_FLAGS, op: 'SCMP_CMP_MASKED_EQ' }], includes: { arches: ['s390', 's390x'] }, excludes: { caps: ['CAP_SYS_ADMIN'] } },
  // clone3's flags are behind a pointer, out of seccomp's reach: ENOSYS makes libc fall back to clone.
  { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS, excludes: { caps: ['CAP_SYS_ADMIN'] } },
  { names: ['reboot'], includes: { caps: ['CAP_SYS_BOOT'] } },
  { names: ['chroot'], includes: { caps: ['CAP_SYS_CHROOT'] } },
  { names: ['delete_module', 'init_module', 'finit_module'], includes: { caps: ['CAP_SYS_MODULE'] } },
  { names: ['acct'], includes: { caps: ['CAP_SYS_PACCT'] } },
  { names: ['kcmp', 'pidfd_getfd', 'process_madvise', 'process_vm_readv', 'process_vm_writev', 'ptrace'], includes: { caps: ['CAP_SYS_PTRACE'] } },
  { names: ['iopl', 'ioperm'], includes: { caps: ['CAP_SYS_RAWIO'] } },
  { names: ['settimeofday', 'stime', 'clock_settime', 'clock_settime64'], includes: { caps: ['CAP_SYS_TIME'] } },
  { names: ['vhangup'], includes: { caps: ['CAP_SYS_TTY_CONFIG'] } },
  { names: ['get_mempolicy', 'mbind', 'set_mempolicy', 'set_mempolicy_home_node'], includes: { caps: ['CAP_SYS_NICE'] } },
  { names: ['syslog'], includes: { caps: ['CAP_SYSLOG'] } },
  { names: ['bpf'], includes: { caps: ['CAP_BPF'] } },
  { names: ['perf_event_open'], includes: { caps: ['CAP_PERFMON'] } },
];

/** libseccomp's name of the native architecture, and the seccomp architectures a process of it may use. */
const ARCHES: Record<string, { name: string; scmp: string[] }> = {
  x64: { name: 'amd64', scmp: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'] },
  arm64: { name: 'arm64', scmp: ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'] },
  s390x: { name: 's390x', scmp: ['SCMP_ARCH_S390X', 'SCMP_ARCH_S390'] },
  riscv64: { name: 'riscv64', scmp: ['SCMP_ARCH_RISCV64'] },
  arm: { name: 'arm', scmp: [] },
  ia32: { name: 'x86', scmp: [] },
  ppc64: { name: 'ppc64le', scmp: [] },
};

function kernelVersion(text: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/**
 * Docker's default profile for a container with `capabilities`, on this machine's architecture
 * and kernel (or the given ones, Node's `process.arch` names).
 */
export function defaultSeccompProfile(capabilities: readonly string[], arch: string = process.arch, kernel: string = release()): LinuxSeccomp {
  const native = ARCHES[arch];
  const archName = native?.name ?? arch;
  const [major, minor] = kernelVersion(kernel);
  const caps = new Set(capabilities);
  const applies = (rule: Rule): boolean => {
    const { includes: inc, excludes: exc } = rule;
    if (inc?.arches && !inc.arches.includes(archName)) return false;
    if (inc?.caps && !inc.caps.every((c) => caps.has(c))) return false;
    if (inc?.minKernel && (major < inc.minKernel[0] || (major === inc.minKernel[0] && minor < inc.minKernel[1]))) return false;
    if (exc?.arches?.includes(archName)) return false;
    if (exc?.caps?.some((c) => caps.has(c))) return false;
    return true;
  };
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: EPERM,
    architectures: native ? [...native.scmp] : [],
    syscalls: RULES.filter(applies).map(({ names, action, errnoRet, args }) => ({
      names: [...names],
      action: action ?? 'SCMP_ACT_ALLOW',
      ...(errnoRet !== undefined ? { errnoRet } : {}),
      ...(args ? { args: args.map((a) => ({ ...a })) } : {}),
    })),
  };
}
