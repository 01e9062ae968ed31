#!/usr/bin/env bash
# The whole test suite: installs the real components the tests use (runc, a C compiler for the
# seccomp loader, the CNCF registry, skopeo, umoci, busybox, and Docker 20.10 as the reference for
# the differential tests), builds, and runs every test. Tests start and stop their own registries
# on 127.0.0.1; this script starts and stops a private Docker engine without network.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh runc gcc libc6-dev docker-registry skopeo umoci \
  busybox-static apache2-utils openssl iproute2 docker.io openssh-client tmux
npm ci --no-audit --no-fund
npm run build
# The tests are type-checked too: a test importing a name a module no longer exports fails here.
npx tsc -p tsconfig.test.json

report=$(mktemp)
engine=$(mktemp -d /var/tmp/builder-test-dockerd.XXXXXX)
trap 'bash scripts/reference-dockerd.sh stop "$engine"; rm -f "$report"' EXIT
eval "$(bash scripts/reference-dockerd.sh start "$engine")"
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" || status=$?
# One plain summary line, whatever the runner's own formatting.
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`vitest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
' "$report" || true
exit $status
