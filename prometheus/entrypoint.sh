#!/bin/sh
# Renders Prometheus' configuration from balena variables of the prometheus service, then
# starts Prometheus with it. POSIX sh (the image is busybox). Every variable is optional:
#
#   PUBLIC_URL            the device's public URL, for alert links (Prometheus'
#                         --web.external-url); default https://$BALENA_DEVICE_UUID.balena-devices.com,
#                         else http://localhost:9090 (derive_public_url in entrypoint-lib.sh)
#   DEVICE_OFFLINE_FOR    how long a device is offline before DeviceOffline fires (30m)
#   REMOTE_WRITE_URL      also send every series to this remote-write endpoint (Grafana Cloud,
#                         Mimir, Thanos Receive, a Prometheus with its receiver on)
#   REMOTE_WRITE_USERNAME, REMOTE_WRITE_PASSWORD   its basic auth, or
#   REMOTE_WRITE_BEARER_TOKEN                      its bearer token
#   EXTERNAL_LABELS       name=value[,name=value...] added to every series sent and every
#                         alert; `monitor` is the device's name (or uuid) unless given here
#
# Secrets go into files of mode 0600 that the configuration names (*_file); no value is
# logged. A bad value stops the service with one line naming the variable, and so does a
# newline, a tab or another control character in any variable read here. For tests, the
# paths are overridable (PROMETHEUS_SOURCE_DIR, PROMETHEUS_CONFIG_DIR, PROMETHEUS_BIN) and
# PROMETHEUS_RENDER_ONLY=1 prints the arguments instead of starting Prometheus.
set -eu

src=${PROMETHEUS_SOURCE_DIR:-/etc/prometheus}
out=${PROMETHEUS_CONFIG_DIR:-/tmp/prometheus}
bin=${PROMETHEUS_BIN:-/bin/prometheus}

fail() {
  echo "prometheus: $1" >&2
  exit 1
}

# The code the entrypoints share (refuse_control_chars, check_http_url, derive_public_url):
# scripts/entrypoint-lib.sh, which the image copies beside this file; in the repository it is
# read from scripts/ (the checks run the entrypoints from there).
here=$(dirname "$0")
[ -r "$here/entrypoint-lib.sh" ] && lib=$here/entrypoint-lib.sh || lib=$here/../scripts/entrypoint-lib.sh
[ -r "$lib" ] || fail "cannot read entrypoint-lib.sh, which entrypoint.sh needs beside it"
# shellcheck source=scripts/entrypoint-lib.sh
. "$lib"

# A checked value as a YAML double-quoted string: backslashes and quotes escaped. Control
# characters were refused before, so nothing else can end the string or the line.
quoted() {
  printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

duration() {
  printf '%s' "$2" | grep -Eq '^([0-9]+[yw])?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$' && [ -n "$2" ] ||
    fail "$1: expected a duration such as 30m, 1h or 1h30m, got \"$2\""
}

# --- read and check everything before writing anything
refuse_control_chars PROMETHEUS_SOURCE_DIR PROMETHEUS_CONFIG_DIR PROMETHEUS_BIN \
  PROMETHEUS_RENDER_ONLY DEVICE_OFFLINE_FOR PUBLIC_URL BALENA_DEVICE_UUID REMOTE_WRITE_URL \
  REMOTE_WRITE_USERNAME REMOTE_WRITE_PASSWORD REMOTE_WRITE_BEARER_TOKEN EXTERNAL_LABELS \
  BALENA_DEVICE_NAME_AT_INIT

offline_for=${DEVICE_OFFLINE_FOR:-30m}
duration DEVICE_OFFLINE_FOR "$offline_for"

derive_public_url http://localhost:9090

remote_url=${REMOTE_WRITE_URL:-}
remote_user=${REMOTE_WRITE_USERNAME:-}
remote_password=${REMOTE_WRITE_PASSWORD:-}
remote_token=${REMOTE_WRITE_BEARER_TOKEN:-}
if [ -n "$remote_url" ]; then
  check_http_url REMOTE_WRITE_URL
  case $remote_url in
    *://*@*) fail "REMOTE_WRITE_URL: put credentials in REMOTE_WRITE_USERNAME and REMOTE_WRITE_PASSWORD, not in the URL" ;;
  esac
fi
if [ -n "$remote_user" ] && [ -z "$remote_password" ]; then
  fail "REMOTE_WRITE_PASSWORD is not set: basic auth needs REMOTE_WRITE_USERNAME and REMOTE_WRITE_PASSWORD"
fi
if [ -z "$remote_user" ] && [ -n "$remote_password" ]; then
  fail "REMOTE_WRITE_USERNAME is not set: basic auth needs REMOTE_WRITE_USERNAME and REMOTE_WRITE_PASSWORD"
fi
if [ -n "$remote_user" ] && [ -n "$remote_token" ]; then
  fail "REMOTE_WRITE_BEARER_TOKEN: set either it or REMOTE_WRITE_USERNAME/REMOTE_WRITE_PASSWORD, not both"
fi
if [ -z "$remote_url" ] && { [ -n "$remote_user" ] || [ -n "$remote_token" ]; }; then
  fail "REMOTE_WRITE_URL is not set: the remote-write credentials need it"
fi

# External labels: the given ones, and `monitor` unless given. Prometheus refuses a label name
# outside [a-zA-Z_][a-zA-Z0-9_]* (its 2.x promtool, which the checks run, allows no other) and
# a name given twice (a YAML key twice); names starting with __ are Prometheus' own. An empty
# value would mean no label at all, so it is refused rather than silently dropped. Values are
# written as YAML double-quoted strings, with backslashes and double quotes escaped (quoted
# above); control characters, which YAML cannot hold there, were refused above. Commas
# separate the pairs, so a value cannot hold one; the first = ends the name.
labels=""
names=" "
monitor_given=false
old_ifs=$IFS
IFS=','
set -f # no globbing of the pairs
for pair in ${EXTERNAL_LABELS:-}; do
  IFS=$old_ifs
  [ -n "$pair" ] || continue
  name=${pair%%=*}
  value=${pair#*=}
  [ "$name" != "$pair" ] || fail "EXTERNAL_LABELS: expected name=value pairs separated by commas, got \"$pair\""
  printf '%s\n' "$name" | grep -Eqx '[a-zA-Z_][a-zA-Z0-9_]*' ||
    fail "EXTERNAL_LABELS: \"$name\" is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"
  case $name in __*) fail "EXTERNAL_LABELS: names starting with __ are reserved" ;; esac
  case $names in *" $name "*) fail "EXTERNAL_LABELS: \"$name\" is given twice" ;; esac
  names="$names$name "
  [ -n "$value" ] || fail "EXTERNAL_LABELS: \"$name\" has an empty value"
  [ "$name" = monitor ] && monitor_given=true
  labels="$labels    $name: $(quoted "$value")
"
done
set +f
IFS=$old_ifs
if [ "$monitor_given" = false ]; then
  monitor=${BALENA_DEVICE_NAME_AT_INIT:-${BALENA_DEVICE_UUID:-}}
  [ -z "$monitor" ] || labels="$labels    monitor: $(quoted "$monitor")
"
fi

# --- write the configuration: the shipped file with external labels, the rules with the
# offline threshold, and remote_write with its secrets in files.
umask 077
mkdir -p "$out/rules" "$out/secrets"
rm -f "$out/rules/"*.yml "$out/secrets/"*
{
  if [ -n "$labels" ]; then
    sed '/^global:$/q' "$src/prometheus.yml"
    printf '  external_labels:\n%s' "$labels"
    sed '1,/^global:$/d' "$src/prometheus.yml"
  else
    cat "$src/prometheus.yml"
  fi
  if [ -n "$remote_url" ]; then
    printf '\n# From REMOTE_WRITE_URL (prometheus/entrypoint.sh).\nremote_write:\n  - url: %s\n' "$(quoted "$remote_url")"
    if [ -n "$remote_user" ]; then
      printf '%s' "$remote_password" > "$out/secrets/remote_write_password"
      printf '    basic_auth:\n      username: %s\n      password_file: %s\n' \
        "$(quoted "$remote_user")" "$out/secrets/remote_write_password"
    elif [ -n "$remote_token" ]; then
      printf '%s' "$remote_token" > "$out/secrets/remote_write_token"
      printf '    authorization:\n      credentials_file: %s\n' "$out/secrets/remote_write_token"
    fi
  fi
} > "$out/prometheus.yml"
for rules in "$src"/rules/*.yml; do
  sed "s/^\( *for: \)[0-9a-z]* # DEVICE_OFFLINE_FOR$/\1$offline_for # DEVICE_OFFLINE_FOR/" \
    "$rules" > "$out/rules/${rules##*/}"
done

if [ -z "$remote_url" ]; then
  echo "prometheus: history stays on this device (set REMOTE_WRITE_URL to send it to a central store)"
else
  echo "prometheus: sending every series to the remote-write endpoint of REMOTE_WRITE_URL"
fi

set -- "--config.file=$out/prometheus.yml" "--web.external-url=$public_url" "$@"
if [ "${PROMETHEUS_RENDER_ONLY:-}" = 1 ]; then
  printf '%s\n' "$@"
  exit 0
fi
exec "$bin" "$@"
