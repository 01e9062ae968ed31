#!/usr/bin/env bash
# The main job on a fresh machine: install what builder needs, then build the example in
# examples/ into the local store (no daemon, no registry, no internet).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh runc busybox-static gcc libc6-dev
npm ci --no-audit --no-fund
npm run build

# The example's base image is made from Debian's static busybox, by builder itself.
cp "$(command -v busybox)" examples/base/busybox
./bin/builder build -t busybox:local examples/base
./bin/builder build -t example/site:latest examples/app
echo
echo "built example/site:latest into ${BUILDER_ROOT:-the local store}; export it with:"
echo "  ./bin/builder build -t example/site:latest -o type=oci,dest=site.tar examples/app"
