#!/usr/bin/env bash
# The test suite: install, build, run every ctest suite; then the unit suites again under
# AddressSanitizer + UBSan (the end-to-end suites, labelled e2e, run once, in the plain build).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/fetch-corpus.sh >/dev/null
bash scripts/build.sh
(cd build && ctest --output-on-failure -j 2)
bash scripts/build.sh --asan
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j 2 -LE e2e)
