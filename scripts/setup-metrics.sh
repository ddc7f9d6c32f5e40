#!/usr/bin/env bash
# Installs (idempotently) what the metrics test needs (crates/butterflyd/tests/metrics_prometheus.rs):
#
#   prometheus   the server that scrapes butterflyd's --metrics endpoint, and promtool
#                (`promtool check metrics`). The test runs its own server in a network
#                namespace; the package's service is not needed (on a machine with systemd
#                it is enabled on :9090 by the package: `systemctl disable --now prometheus`).
#   curl         the test's HTTP client (the metrics endpoint, Prometheus's query API)
set -euo pipefail

source "$(dirname "$0")/lib/apt.sh"
apt_install_missing setup-metrics prometheus curl
