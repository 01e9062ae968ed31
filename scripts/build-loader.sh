#!/bin/sh
# Compiles the seccomp loader (src/executor/seccomp-loader.c) to dist/seccomp-loader, static so
# that it runs in any image. Without a C compiler and a static libc, builder works all the same:
# runc then compiles the seccomp profile at every RUN step itself.
set -e
cd "$(dirname "$0")/.."
out=dist/seccomp-loader
mkdir -p dist
if "${CC:-cc}" -static -Os -Wall -Wextra -Werror -o "$out.tmp" src/executor/seccomp-loader.c; then
  mv "$out.tmp" "$out"
else
  rm -f "$out.tmp" "$out"
  echo "note: the seccomp loader was not built (apt-get install gcc libc6-dev): runc compiles the seccomp profile at every RUN step" >&2
fi
