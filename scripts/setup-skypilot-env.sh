#!/usr/bin/env bash
# Create (or reuse) the isolated Python environment that holds the SkyPilot client.
#
# Why a separate environment: skypilot 0.14.1 pins click<8.2 (and its kubernetes extra caps
# kubernetes<36), while kopf >= 1.40 needs click>=8.2. The operator never imports `sky`; its SkyPilot
# launcher runs operator/skymigrate/operator/launchers/sky_runner.py with this environment's Python
# and talks to it over a JSON pipe. Both environments pass `pip check`.
#
#   scripts/setup-skypilot-env.sh            # prints the environment's python on the last line
#   SKYMIGRATE_SKY_EXTRAS=nebius,aws scripts/setup-skypilot-env.sh   # cloud SDKs for a local API server
#
# Environment: SKYMIGRATE_SKY_VENV (default ${SKYMIGRATE_TOOLS_DIR:-~/.cache/skymigrate-tools}/sky-venv),
# SKYMIGRATE_SKY_VERSION (default 0.14.1), SKYMIGRATE_SKY_EXTRAS, SKYMIGRATE_SKY_BASE_PYTHON (python3).
# Idempotent: a second run with the same version and extras only checks the stamp (well under a second).
set -euo pipefail

version="${SKYMIGRATE_SKY_VERSION:-0.14.1}"
extras="${SKYMIGRATE_SKY_EXTRAS:-}"
venv="${SKYMIGRATE_SKY_VENV:-${SKYMIGRATE_TOOLS_DIR:-$HOME/.cache/skymigrate-tools}/sky-venv}"
base_python="${SKYMIGRATE_SKY_BASE_PYTHON:-python3}"
requirement="skypilot${extras:+[$extras]}==$version"
stamp="$venv/.skymigrate-stamp"

if [[ -x "$venv/bin/python" && "$(cat "$stamp" 2>/dev/null)" == "$requirement" ]]; then
  echo "$venv/bin/python"
  exit 0
fi

mkdir -p "$(dirname "$venv")"
# Parallel test sessions may race to build the same environment: one builds, the others wait.
exec 9>"$venv.lock"
flock 9
if [[ -x "$venv/bin/python" && "$(cat "$stamp" 2>/dev/null)" == "$requirement" ]]; then
  echo "$venv/bin/python"
  exit 0
fi

echo "setup-skypilot-env: installing $requirement into $venv" >&2
rm -f "$stamp"
if [[ ! -x "$venv/bin/python" ]]; then
  "$base_python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$requirement" >&2
"$venv/bin/python" -m pip check >&2
"$venv/bin/python" - "$version" <<'EOF' >&2
import importlib.metadata as md
import sys

got = md.version("skypilot")
if got != sys.argv[1]:
    sys.exit(f"setup-skypilot-env: expected skypilot {sys.argv[1]}, found {got}")
EOF
echo "$requirement" >"$stamp"
echo "$venv/bin/python"
