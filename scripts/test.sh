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

report=$(mktemp)
trap 'rm -f "$report"' EXIT
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" || status=$?
# One plain summary line, whatever the runner's own formatting.
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`vitest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
' "$report" || true
exit $status
