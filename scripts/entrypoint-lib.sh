# shellcheck shell=sh
# What the entrypoints of the prometheus, alertmanager and grafana images share: one rule for
# control characters in variables, one rule for URLs, and one derivation of the device's public
# URL. POSIX sh: busybox ash runs it in the images, and the checks run it under dash too.
#
# The three images are built with the repository root as context (docker-compose.yml), and
# each Dockerfile.template copies this file beside entrypoint.sh, which sources it; run from the
# repository (as the checks do), entrypoint.sh reads it here.
#
# The sourcing entrypoint defines `fail MESSAGE` first: it prints MESSAGE as one line on stderr,
# with the service's prefix, and exits 1. Messages from here name the variable and never show
# its value: many of the variables are secrets.

# env_value NAME: the variable's value into $v ("" when unset). Not through $(...), which would
# drop trailing newlines before they can be refused.
env_value() {
  eval "v=\${$1:-}"
}

# refuse_control_chars NAME...: fails naming the first variable whose value holds a newline, a
# carriage return, a tab, an escape or any other control character (0x01-0x1f, 0x7f). Every
# entrypoint calls it first, with every variable it reads. In a rendered YAML file a newline
# injects lines and the other control characters make YAML refuse the whole file, so the
# service would fail later with a parser's message instead of this one line; in a URL, a
# password or a log line they are never meant either.
refuse_control_chars() {
  for lib_name in "$@"; do
    env_value "$lib_name"
    case $v in
      *[[:cntrl:]]*)
        fail "$lib_name contains a newline, a tab or another control character; set it on one line without them" ;;
    esac
  done
}

# check_http_url NAME: fails unless the variable is an http:// or https:// URL with a host, and
# free of whitespace, quotes, braces, angle brackets and backslashes. None of these is valid in
# a URL unencoded (RFC 3986; percent-encode them), and "{{" would make Alertmanager 0.31 and
# later read a webhook URL as a template (prometheus/alertmanager pull 4798).
check_http_url() {
  refuse_control_chars "$1"
  env_value "$1"
  case $v in
    http://?* | https://?*) ;;
    *) fail "$1 must be an http:// or https:// URL" ;;
  esac
  case $v in
    *[[:space:]\"\'\<\>\\{}]*)
      fail "$1 must not contain spaces, quotes, braces, angle brackets or backslashes; percent-encode them" ;;
  esac
}

# derive_public_url FALLBACK: the device's public URL into $public_url, without trailing
# slashes. Links in alerts, notifications and dashboards point there, and the exporter
# forwards /grafana/ and /alertmanager/ from it.
# - PUBLIC_URL when set (openBalena, or a proxy of one's own), checked by check_http_url;
# - else https://<BALENA_DEVICE_UUID>.balena-devices.com, balenaCloud's public device URL
#   (balena sets BALENA_DEVICE_UUID in every container);
# - else FALLBACK, which may be empty: the caller decides what no public URL means.
derive_public_url() {
  env_value PUBLIC_URL
  if [ -n "$v" ]; then
    check_http_url PUBLIC_URL
    public_url=$v
    while :; do
      case $public_url in
        */) public_url=${public_url%/} ;;
        *) break ;;
      esac
    done
    case $public_url in
      http://?* | https://?*) ;;
      *) fail "PUBLIC_URL must be an http:// or https:// URL with a host" ;;
    esac
    return 0
  fi
  env_value BALENA_DEVICE_UUID
  if [ -n "$v" ]; then
    case $v in
      *[!0-9a-zA-Z]*) fail "BALENA_DEVICE_UUID must be letters and digits only; set PUBLIC_URL instead" ;;
    esac
    public_url=https://$v.balena-devices.com
    return 0
  fi
  public_url=$1
}
