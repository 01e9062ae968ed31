#!/usr/bin/env bash
# The whole test suite: installs the real components the tests use (runc, the CNCF registry,
# skopeo, umoci, busybox), builds, and runs every test. Tests start and stop their own
# registries on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh runc docker-registry skopeo umoci \
  busybox-static apache2-utils openssl iproute2
npm ci --no-audit --no-fund
npm run build
npx vitest run
