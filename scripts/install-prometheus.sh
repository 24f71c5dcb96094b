#!/usr/bin/env bash
# Install Prometheus from Debian's packages if no prometheus binary is on PATH.
#
# The tests start the binary themselves (tests/support/prometheus.py) on 127.0.0.1 with a generated
# config; the package's own service must not start, so the install runs under a policy-rc.d that
# denies every service start (kept if the machine already has one).
set -euo pipefail

if command -v prometheus >/dev/null 2>&1; then
    echo "prometheus already installed: $(command -v prometheus)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    OWN_POLICY=1
fi
cleanup() { if [ "$OWN_POLICY" = 1 ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# No recommends: the node exporter and its timers are not needed.
$SUDO apt-get install -y -qq --no-install-recommends prometheus
# Never let a packaged service scrape or bind ports beside the tests' own instance.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
prometheus --version | head -1
