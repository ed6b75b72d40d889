#!/bin/sh
# Starts Prometheus with the shipped configuration. The exporter's internal port needs no
# credentials, so nothing secret is handed over here.
set -eu
exec /bin/prometheus "$@"
