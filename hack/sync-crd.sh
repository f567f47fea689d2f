#!/usr/bin/env bash
# Copies the CRD (crds/flowregistry.yaml, the single source of truth) into the Helm chart.
set -euo pipefail
cd "$(dirname "$0")/.."
cp crds/flowregistry.yaml helm/flowreg/crds/flowregistry.yaml
