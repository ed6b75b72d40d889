#!/bin/sh
# Starts Prometheus after handing it METRICS_TOKEN (a balena fleet variable, injected into
# every service) as the bearer token of the exporter scrape. Empty when /metrics is open.
set -eu
printf '%s' "${METRICS_TOKEN:-}" > /etc/prometheus/secrets/metrics_token
exec /bin/prometheus "$@"
