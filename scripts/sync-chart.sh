#!/usr/bin/env bash
# Copy the files the Helm chart ships from their one source in the repository into the chart:
#   crds/migration.yaml        -> charts/skymigrate/crds/migration.yaml   (installed by helm before templates)
#   dashboards/skymigrate.json -> charts/skymigrate/dashboards/skymigrate.json (the dashboard ConfigMap)
# Helm reads only files inside the chart directory, hence copies; tests/test_helm.py fails when they drift.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
chart="$root/charts/skymigrate"
mkdir -p "$chart/crds" "$chart/dashboards"
cp "$root/crds/migration.yaml" "$chart/crds/migration.yaml"
cp "$root/dashboards/skymigrate.json" "$chart/dashboards/skymigrate.json"
echo "chart copies updated"
