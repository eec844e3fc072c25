#!/usr/bin/env bash
# Copy the generated CRDs (crds/, written by `python -m mfpo_operator.crd --write`) into the
# Helm chart's crds/ directory, which Helm installs before the templates.
# tests/deploy/test_chart.py fails while the two differ.
set -euo pipefail
cd "$(dirname "$0")/.."
for crd in crds/*.yaml; do
  cp "$crd" "charts/mfpo/crds/$(basename "$crd")"
  echo "synced $crd -> charts/mfpo/crds/$(basename "$crd")"
done
