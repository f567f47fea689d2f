#!/usr/bin/env bash
# The whole test suite, from a fresh machine: Python deps into .venv; the control plane and
# node binaries (kube-apiserver, etcd, kubectl, helm, kubelet, ...), Flux's controllers and a
# Qdrant server into a cache outside the repo (the Qdrant build beside the Go builds); lint;
# then pytest.
# Extra arguments go to pytest (e.g. `bash hack/test.sh -m "not e2e"`).
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'

# A Qdrant server for the store tests, unless one is given ($QDRANT_URL, e.g. from Docker).
# Its Rust build runs beside the Go builds below: each has serial stretches (downloads, links)
# the other fills, which shortens a cold run. A failed build fails this script at the wait.
qdrant_pid=""
if [ -z "${QDRANT_URL:-}" ] && [ "${FLOWREG_SKIP_QDRANT_SERVER:-}" != "1" ]; then
  qdrant_out="$(mktemp)"
  trap 'rm -f "$qdrant_out"' EXIT
  bash hack/qdrant.sh > "$qdrant_out" &
  qdrant_pid=$!
fi

if [ -f hack/testbin.sh ] && [ "${FLOWREG_SKIP_E2E:-}" != "1" ]; then
  FLOWREG_TESTBIN_DIR="$(bash hack/testbin.sh | tail -n 1)"
  export FLOWREG_TESTBIN_DIR
fi

# Flux's source-controller and kustomize-controller for the GitOps tests, unless
# FLOWREG_SKIP_FLUX=1, and the kstatus program for the status table (when Go is there: without
# Go and with the end-to-end tests skipped, the table skips too, except in CI).
if [ "${FLOWREG_SKIP_E2E:-}" != "1" ] && [ "${FLOWREG_SKIP_FLUX:-}" != "1" ]; then
  FLOWREG_FLUX_DIR="$(bash hack/flux.sh | tail -n 1)"
  export FLOWREG_FLUX_DIR
elif command -v go >/dev/null || [ "${CI:-}" = "true" ]; then
  FLOWREG_FLUX_DIR="$(bash hack/flux.sh kstatus | tail -n 1)"
  export FLOWREG_FLUX_DIR
fi

# The Qdrant server's build (wait for it below).
if [ -n "$qdrant_pid" ]; then
  wait "$qdrant_pid"
  FLOWREG_QDRANT_BIN="$(tail -n 1 "$qdrant_out")"
  export FLOWREG_QDRANT_BIN
fi

.venv/bin/ruff check operator tests bench
.venv/bin/python -m pytest "$@"
