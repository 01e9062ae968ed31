// The seccomp loader: starts a RUN step's command under the seccomp filter runc would have
// installed, compiled once (see seccomp-filter.ts) instead of by runc at every container start,
// where compiling Docker's profile with libseccomp is about 15 ms of a trivial step's 85 ms.
//
//   /proc/self/fd/3 ARGV...      in the container (runc --preserve-fds 3): fd 3 is this program,
//                                fd 4 the filter, fd 5 where a start failure is reported. Loads
//                                the filter, then execs ARGV as runc does (ARGV[0] looked up in
//                                PATH as Go's exec.LookPath does, with runc's messages).
//   /proc/self/fd/3 --pause      in a container without fd 4, under runc's own filter: prints
//                                "ready" and waits, while the host reads that filter.
//   seccomp-loader --dump PID    on the host: writes PID's one seccomp filter to stdout.
//
// Built static (`npm run build`): it runs in any image, from scratch to distroless.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PTRACE_SECCOMP_GET_FILTER
#define PTRACE_SECCOMP_GET_FILTER 0x420c
#endif

enum { SELF_FD = 3, FILTER_FD = 4, REPORT_FD = 5, MAX_INSNS = 4096 };

extern char **environ;

/** A start failure, reported on fd 5 as runc logs one; the builder turns it into runc's error. */
static int start_failed(const char *fmt, ...) {
  char msg[8192];
  int n = snprintf(msg, sizeof msg, "runc run failed: unable to start container process: ");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg + n, sizeof msg - n, fmt, ap);
  va_end(ap);
  if (write(REPORT_FD, msg, strlen(msg)) < 0) {
    // No report channel: say it on stderr rather than not at all.
    fprintf(stderr, "%s\n", msg);
  }
  return 127;
}

/** Go's error text for errno `e`: strerror, its first letter in lower case (syscall.Errno). */
static const char *go_strerror(int e) {
  static char text[256];
  snprintf(text, sizeof text, "%s", strerror(e));
  if (text[0] >= 'A' && text[0] <= 'Z' && !(text[1] >= 'A' && text[1] <= 'Z')) text[0] += 'a' - 'A';
  return text;
}

/** Go's path.Clean, in place (the buffer only shrinks). */
static void clean_path(char *p) {
  int rooted = p[0] == '/';
  size_t n = strlen(p), r = 0, w = 0, dotdot = 0;
  char *out = p;
  if (n == 0) {
    strcpy(p, ".");
    return;
  }
  if (rooted) {
    out[w++] = '/';
    r = dotdot = 1;
  }
  while (r < n) {
    if (p[r] == '/') {
      r++;
    } else if (p[r] == '.' && (r + 1 == n || p[r + 1] == '/')) {
      r++;
    } else if (p[r] == '.' && p[r + 1] == '.' && (r + 2 == n || p[r + 2] == '/')) {
      r += 2;
      if (w > dotdot) {
        w--;
        while (w > dotdot && out[w] != '/') w--;
      } else if (!rooted) {
        if (w > 0) out[w++] = '/';
        out[w++] = '.';
        out[w++] = '.';
        dotdot = w;
      }
    } else {
      if ((rooted && w != 1) || (!rooted && w != 0)) out[w++] = '/';
      for (; r < n && p[r] != '/'; r++) out[w++] = p[r];
    }
  }
  if (w == 0) out[w++] = '.';
  out[w] = '\0';
}

enum { NOT_EXECUTABLE = -1 };

/** Go's exec findExecutable: 0, stat's errno, or NOT_EXECUTABLE (a directory, or no x bit). */
static int find_executable(const char *file) {
  struct stat st;
  if (stat(file, &st) < 0) return errno;
  return !S_ISDIR(st.st_mode) && (st.st_mode & 0111) ? 0 : NOT_EXECUTABLE;
}

/**
 * runc's exec.LookPath(argv0) (Go 1.19 with runc 1.1): a name with a slash must be executable; a
 * bare name is searched in PATH, and a match through a relative PATH entry is refused.
 */
static int look_path(const char *name, char *found, size_t size) {
  if (strchr(name, '/')) {
    int e = find_executable(name);
    if (e == NOT_EXECUTABLE) return start_failed("exec: \"%s\": permission denied", name);
    if (e) return start_failed("exec: \"%s\": stat %s: %s", name, name, go_strerror(e));
    snprintf(found, size, "%s", name);
    return 0;
  }
  const char *path = getenv("PATH");
  // Go's filepath.SplitList: an empty PATH is no directory at all; an empty entry is ".".
  for (const char *dir = path && *path ? path : NULL; dir;) {
    const char *end = strchrnul(dir, ':');
    int len = (int)(end - dir);
    if (snprintf(found, size, "%.*s/%s", len ? len : 1, len ? dir : ".", name) < (int)size) {
      clean_path(found);
      if (find_executable(found) == 0) {
        if (found[0] != '/') return start_failed("exec: \"%s\": cannot run executable found relative to current directory", name);
        return 0;
      }
    }
    dir = *end ? end + 1 : NULL;
  }
  return start_failed("exec: \"%s\": executable file not found in $PATH", name);
}

/** Reads the filter on fd 4 (whole instructions, at most the kernel's limit). */
static int read_filter(struct sock_fprog *prog) {
  static struct sock_filter insns[MAX_INSNS];
  struct stat st;
  if (fstat(FILTER_FD, &st) < 0) return start_failed("seccomp loader: no filter: %s", go_strerror(errno));
  if (st.st_size <= 0 || st.st_size % sizeof insns[0] || st.st_size > (off_t)sizeof insns) return start_failed("seccomp loader: a filter of %lld bytes", (long long)st.st_size);
  for (off_t done = 0; done < st.st_size;) {
    ssize_t n = pread(FILTER_FD, (char *)insns + done, st.st_size - done, done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return start_failed("seccomp loader: reading the filter: %s", n < 0 ? go_strerror(errno) : "short file");
    done += n;
  }
  prog->len = (unsigned short)(st.st_size / sizeof insns[0]);
  prog->filter = insns;
  return 0;
}

static int load_and_exec(char **argv) {
  struct sock_fprog prog;
  int failed = read_filter(&prog);
  if (failed) return failed;
  close(SELF_FD);
  close(FILTER_FD);
  // The report channel stays open until the command is exec'd: an exec failure is said there.
  fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC);
  char found[4096];
  // Looked up before the filter, as runc does (it calls LookPath before loading its filter).
  if ((failed = look_path(argv[0], found, sizeof found))) return failed;
  // runc loads the filter with flags 0 through prctl; no_new_privs is already set (the spec's
  // noNewPrivileges), which is what lets an unprivileged user load a filter.
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) return start_failed("seccomp loader: loading the filter: %s", go_strerror(errno));
  execve(found, argv, environ);
  // As runc: past this point the failure is the process's own, on its stderr, exit status 1.
  int e = errno;
  close(REPORT_FD);
  fprintf(stderr, "exec %s: %s\n", found, go_strerror(e));
  return 1;
}

/** The host side: PID's seccomp filter, as the kernel holds it, on stdout; exactly one filter. */
static int dump(pid_t pid) {
  static struct sock_filter insns[MAX_INSNS];
  int status;
  if (ptrace(PTRACE_ATTACH, pid, 0, 0) < 0) return perror("ptrace attach"), 1;
  if (waitpid(pid, &status, __WALL) < 0) return perror("waitpid"), 1;
  long n = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0, NULL);
  int e = errno;
  long got = n > 0 && n <= MAX_INSNS ? ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0, insns) : -1;
  int more = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 1, NULL) >= 0;
  ptrace(PTRACE_DETACH, pid, 0, 0);
  if (n <= 0 || got != n) return fprintf(stderr, "reading the filter: %s\n", n <= 0 ? strerror(e) : "changed"), 1;
  if (more) return fprintf(stderr, "more than one filter\n"), 1;
  size_t size = (size_t)n * sizeof insns[0];
  return fwrite(insns, 1, size, stdout) == size && fflush(stdout) == 0 ? 0 : 1;
}

static void on_signal(int sig) {
  _exit(128 + sig);
}

int main(int argc, char **argv) {
  // With a filter on fd 4, the arguments are the step's command, whatever they are.
  if (fcntl(FILTER_FD, F_GETFD) >= 0) return argc > 1 ? load_and_exec(argv + 1) : start_failed("seccomp loader: no command");
  if (argc == 3 && strcmp(argv[1], "--dump") == 0) return dump((pid_t)atoi(argv[2]));
  if (argc == 2 && strcmp(argv[1], "--pause") == 0) {
    // As a container's first process it ignores signals it has no handler for: these let the
    // signals of an interrupted build (runc passes them on) end it, and with it the container.
    for (const int *sig = (const int[]){SIGINT, SIGTERM, SIGHUP, SIGQUIT, 0}; *sig; sig++) signal(*sig, on_signal);
    puts("ready");
    fflush(stdout);
    for (;;) pause();
  }
  fprintf(stderr, "seccomp-loader: runs a container's command under a compiled seccomp filter (fd 4); not for direct use\n");
  return 2;
}
