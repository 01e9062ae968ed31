#!/usr/bin/env bash
# Starts a private Docker engine (Debian's docker.io: Docker 20.10 with BuildKit) for the
# differential tests, which compare builder's images with BuildKit's. It has its own socket and
# data root, no bridge network and no iptables rules, so it touches neither a Docker engine the
# machine may already run nor the network.
#
#   eval "$(bash scripts/reference-dockerd.sh start DIR)"   # prints `export DOCKER_HOST=…`
#   bash scripts/reference-dockerd.sh stop DIR
#
# When the engine does not come up (no cgroups, no overlay…), `start` says why on stderr and
# prints nothing: the differential tests then skip, naming the reason.
set -euo pipefail

cmd=${1:?start or stop}
dir=${2:?state directory}
sock="unix://$dir/docker.sock"

case "$cmd" in
start)
  mkdir -p "$dir"
  dockerd --host "$sock" --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
    --bridge=none --iptables=false --ip-masq=false --ip-forward=false >"$dir/dockerd.log" 2>&1 &
  for _ in $(seq 1 120); do
    if docker -H "$sock" info >/dev/null 2>&1; then
      echo "export DOCKER_HOST=$sock"
      exit 0
    fi
    kill -0 $! 2>/dev/null || break
    sleep 0.5
  done
  echo "reference Docker engine did not start; differential tests will be skipped. Its log ends:" >&2
  tail -n 5 "$dir/dockerd.log" >&2 || true
  ;;
stop)
  if [ -f "$dir/dockerd.pid" ]; then
    pid=$(cat "$dir/dockerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  # Mounts left by a killed engine would keep the data root busy.
  grep -o " $dir/[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$dir"
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2
  exit 2
  ;;
esac
