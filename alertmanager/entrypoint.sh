#!/bin/sh
# Starts Alertmanager for the balena fleet monitor: renders its configuration from balena
# variables (the environment), writes the secrets into files of their own, then execs
# alertmanager. POSIX sh: the image is busybox-based, so no bash-isms.
#
# What the variables mean, and why the routing is what it is: alertmanager/README.md.
#
# Secrets (ALERT_WEBHOOK_BEARER_TOKEN, ALERT_SLACK_WEBHOOK_URL, ALERT_DISCORD_WEBHOOK_URL,
# ALERT_SMTP_PASSWORD) go into files of mode 0600 that the config names through *_file
# fields; they never enter the config itself, and this script never prints them.
# ALERT_WEBHOOK_URL is the exception: Alertmanager 0.25 has no url_file for webhooks, so
# the URL is written into the config (mode 0600 too). Put credentials for the webhook in
# ALERT_WEBHOOK_BEARER_TOKEN, not in its URL.
#
# Everything is validated before anything is written. A bad value stops the container with
# one log line naming the variable (exit 1); the values themselves are never echoed. So do a
# newline, a tab or another control character in any variable read here, and "{{" in one
# that goes into a field Alertmanager expands as a template (see no_template below).
#
# Seams for scripts/check-alertmanager (the container leaves them at their defaults):
#   ALERTMANAGER_CONFIG_DIR     where alertmanager.yml is rendered  (/tmp/alertmanager)
#   ALERTMANAGER_SECRETS_DIR    where the secret files go           ($ALERTMANAGER_CONFIG_DIR/secrets)
#   ALERTMANAGER_TEMPLATES_DIR  the notification templates (*.tmpl) (/etc/alertmanager/templates)
#   ALERTMANAGER_STORAGE_DIR    silences and notification log        (/alertmanager, a volume)
#   ALERTMANAGER_LISTEN_ADDRESS the web listener                     (:9093)
#   ALERTMANAGER_BIN            the binary to exec                   (/bin/alertmanager)
#   ALERTMANAGER_RENDER_ONLY=1  render and validate, then exit 0 instead of starting
set -eu
umask 077

log() { printf 'alertmanager entrypoint: %s\n' "$*" >&2; }
fail() {
  log "error: $*"
  exit 1
}

config_dir=${ALERTMANAGER_CONFIG_DIR:-/tmp/alertmanager}
secrets_dir=${ALERTMANAGER_SECRETS_DIR:-$config_dir/secrets}
templates_dir=${ALERTMANAGER_TEMPLATES_DIR:-/etc/alertmanager/templates}
storage_dir=${ALERTMANAGER_STORAGE_DIR:-/alertmanager}
listen_address=${ALERTMANAGER_LISTEN_ADDRESS:-:9093}
bin=${ALERTMANAGER_BIN:-/bin/alertmanager}
config=$config_dir/alertmanager.yml

# ---------------------------------------------------------------------------------------
# Validation helpers. Each takes the variable's NAME, reads its value, and fails naming it.

# The code the entrypoints share (refuse_control_chars, check_http_url, derive_public_url):
# scripts/entrypoint-lib.sh, which the image copies beside this file; in the repository it is
# read from scripts/ (the checks run the entrypoints from there).
here=$(dirname "$0")
[ -r "$here/entrypoint-lib.sh" ] && lib=$here/entrypoint-lib.sh || lib=$here/../scripts/entrypoint-lib.sh
[ -r "$lib" ] || fail "cannot read entrypoint-lib.sh, which entrypoint.sh needs beside it"
# shellcheck source=scripts/entrypoint-lib.sh
. "$lib"

get() { env_value "$1"; }
is_set() {
  get "$1"
  [ -n "$v" ]
}

# Fields that Alertmanager expands as Go templates before each notification are <tmpl_string>
# in its configuration reference (https://prometheus.io/docs/alerting/latest/configuration/,
# docs/configuration.md of prometheus/alertmanager): Slack's channel, username, title, text
# (and color, fallback, pretext, footer, ...), email's to, from, html, text and header values,
# Discord's title and message; a webhook's url is one from 0.31 (pull 4798). smtp_smarthost,
# auth_username and the *_file paths are plain strings. A "{{" in a variable put into such a
# field passes amtool check-config, and then every notification fails to render. So each
# ALERT_* variable that goes into one is refused when it holds "{{" (the URLs by
# check_http_url, which refuses braces); the title, text and Subject are our own templates.
no_template() {
  get "$1"
  case $v in
    *'{{'*) fail "$1 must not contain {{: Alertmanager reads that field as a template" ;;
  esac
}

# A Prometheus duration, as Alertmanager 0.25 and later parse it: 1y2w3d4h5m6s7ms, units in
# that order, each at most once; "0" alone is zero. Numbers are limited to 6 digits so the
# conversion to milliseconds below cannot overflow. Prints the duration in milliseconds.
duration_ms() {
  get "$1"
  d=$v
  if [ "$d" = 0 ]; then
    echo 0
    return
  fi
  if ! printf '%s\n' "$d" | grep -Eqx '([0-9]{1,6}y)?([0-9]{1,6}w)?([0-9]{1,6}d)?([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?([0-9]{1,6}ms)?'; then
    fail "$1 must be a duration such as 30s, 5m, 4h or 1d (units y w d h m s ms, largest first)"
  fi
  # 1h30m -> "+1*3600000 +30*60000 ": the space keeps a factor's digits apart from the next
  # number, so that the next unit's expression cannot take them for its own.
  sum=$(printf '%s\n' "$d" | sed -e 's/\([0-9]*\)ms$/+\1 /' -e 's/\([0-9]*\)y/+\1*31536000000 /' \
    -e 's/\([0-9]*\)w/+\1*604800000 /' -e 's/\([0-9]*\)d/+\1*86400000 /' \
    -e 's/\([0-9]*\)h/+\1*3600000 /' -e 's/\([0-9]*\)m/+\1*60000 /' -e 's/\([0-9]*\)s/+\1*1000 /')
  # shellcheck disable=SC1102,SC2005,SC2046,SC2086 # $sum is the expression to evaluate
  echo $((0 $sum))
}

# The value as a YAML double-quoted scalar: backslashes and double quotes escaped. Control
# characters were refused before, so nothing else can end the string or the line.
yq() {
  printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

# ---------------------------------------------------------------------------------------
# 1. Validate everything.

# Every variable this script reads, first: one line naming the first with a control character.
refuse_control_chars ALERTMANAGER_CONFIG_DIR ALERTMANAGER_SECRETS_DIR ALERTMANAGER_TEMPLATES_DIR \
  ALERTMANAGER_STORAGE_DIR ALERTMANAGER_LISTEN_ADDRESS ALERTMANAGER_BIN ALERTMANAGER_RENDER_ONLY \
  ALERT_WEBHOOK_URL ALERT_WEBHOOK_BEARER_TOKEN ALERT_SLACK_WEBHOOK_URL ALERT_SLACK_CHANNEL \
  ALERT_DISCORD_WEBHOOK_URL ALERT_EMAIL_TO ALERT_SMTP_SMARTHOST ALERT_SMTP_FROM \
  ALERT_SMTP_USERNAME ALERT_SMTP_PASSWORD ALERT_SMTP_REQUIRE_TLS ALERT_GROUP_WAIT \
  ALERT_GROUP_INTERVAL ALERT_REPEAT_INTERVAL ALERT_MIN_SEVERITY PUBLIC_URL BALENA_DEVICE_UUID

integrations=""
add_integration() { integrations=${integrations:+$integrations,}$1; }

if is_set ALERT_WEBHOOK_URL; then
  # Alertmanager 0.31 and later read a webhook URL as a template: check_http_url refuses braces.
  check_http_url ALERT_WEBHOOK_URL
  case $ALERT_WEBHOOK_URL in
    *://*@*) fail "ALERT_WEBHOOK_URL must not carry user:password@; set ALERT_WEBHOOK_BEARER_TOKEN for the credentials" ;;
  esac
  add_integration webhook
elif is_set ALERT_WEBHOOK_BEARER_TOKEN; then
  fail "ALERT_WEBHOOK_BEARER_TOKEN is set but ALERT_WEBHOOK_URL is not; set the webhook's URL too"
fi

if is_set ALERT_SLACK_WEBHOOK_URL; then
  check_http_url ALERT_SLACK_WEBHOOK_URL
  add_integration slack
  no_template ALERT_SLACK_CHANNEL # channel: <tmpl_string>
elif is_set ALERT_SLACK_CHANNEL; then
  fail "ALERT_SLACK_CHANNEL is set but ALERT_SLACK_WEBHOOK_URL is not; set the Slack incoming webhook URL too"
fi

if is_set ALERT_DISCORD_WEBHOOK_URL; then
  check_http_url ALERT_DISCORD_WEBHOOK_URL
  add_integration discord
fi

smtp_vars="ALERT_SMTP_SMARTHOST ALERT_SMTP_FROM ALERT_SMTP_USERNAME ALERT_SMTP_PASSWORD ALERT_SMTP_REQUIRE_TLS"
if is_set ALERT_EMAIL_TO; then
  no_template ALERT_EMAIL_TO # to: <tmpl_string>
  case $ALERT_EMAIL_TO in
    *@*) ;;
    *) fail "ALERT_EMAIL_TO must be an email address (or several, separated by commas)" ;;
  esac
  is_set ALERT_SMTP_SMARTHOST || fail "ALERT_EMAIL_TO is set but ALERT_SMTP_SMARTHOST is not; set the SMTP server as host:port, e.g. smtp.example.com:587"
  # host:port; the host may be a name, an IPv4 address or [an IPv6 address].
  smtp_port=${ALERT_SMTP_SMARTHOST##*:}
  smtp_host=${ALERT_SMTP_SMARTHOST%:*}
  case $smtp_port in
    '' | *[!0-9]*) fail "ALERT_SMTP_SMARTHOST must be host:port, e.g. smtp.example.com:587" ;;
  esac
  case $smtp_host in
    '' | *[[:space:]]* | *[\"\']*) fail "ALERT_SMTP_SMARTHOST must be host:port, e.g. smtp.example.com:587" ;;
  esac
  is_set ALERT_SMTP_FROM || fail "ALERT_EMAIL_TO is set but ALERT_SMTP_FROM is not; set the sender address"
  no_template ALERT_SMTP_FROM # from: <tmpl_string>
  case $ALERT_SMTP_FROM in
    *@*) ;;
    *) fail "ALERT_SMTP_FROM must be an email address" ;;
  esac
  if is_set ALERT_SMTP_USERNAME && ! is_set ALERT_SMTP_PASSWORD; then
    fail "ALERT_SMTP_USERNAME is set but ALERT_SMTP_PASSWORD is not; set both for SMTP authentication, or neither"
  fi
  if is_set ALERT_SMTP_PASSWORD && ! is_set ALERT_SMTP_USERNAME; then
    fail "ALERT_SMTP_PASSWORD is set but ALERT_SMTP_USERNAME is not; set both for SMTP authentication, or neither"
  fi
  smtp_require_tls=${ALERT_SMTP_REQUIRE_TLS:-true}
  case $smtp_require_tls in
    true | false) ;;
    *) fail "ALERT_SMTP_REQUIRE_TLS must be true or false" ;;
  esac
  add_integration email
else
  for var in $smtp_vars; do
    if is_set "$var"; then
      fail "$var is set but ALERT_EMAIL_TO is not; set the recipient address too"
    fi
  done
fi

# Timing (see the comments in the rendered config below and alertmanager/README.md).
group_wait=${ALERT_GROUP_WAIT:-2m}
group_interval=${ALERT_GROUP_INTERVAL:-10m}
repeat_interval=${ALERT_REPEAT_INTERVAL:-12h}
ALERT_GROUP_WAIT=$group_wait
ALERT_GROUP_INTERVAL=$group_interval
ALERT_REPEAT_INTERVAL=$repeat_interval
duration_ms ALERT_GROUP_WAIT >/dev/null
group_interval_ms=$(duration_ms ALERT_GROUP_INTERVAL) || exit 1
repeat_interval_ms=$(duration_ms ALERT_REPEAT_INTERVAL) || exit 1
[ "$group_interval_ms" -gt 0 ] || fail "ALERT_GROUP_INTERVAL must be longer than 0"
[ "$repeat_interval_ms" -ge "$group_interval_ms" ] ||
  fail "ALERT_REPEAT_INTERVAL must be at least ALERT_GROUP_INTERVAL ($group_interval)"

min_severity=${ALERT_MIN_SEVERITY:-warning}
case $min_severity in
  info) quiet_severities="" ;;
  warning) quiet_severities="info" ;;
  critical) quiet_severities="info|warning" ;;
  *) fail "ALERT_MIN_SEVERITY must be info, warning or critical" ;;
esac

# The public URL: links in notifications and the UI's own links point there. The exporter
# forwards /alertmanager/... from the device's public URL to this container unchanged.
derive_public_url http://localhost:9093
external_url=$public_url/alertmanager/

# ---------------------------------------------------------------------------------------
# 2. Write the secrets, each into a file of its own (mode 0600 from the umask), in a
#    directory of mode 0700 that only this container's user can read. Files of secrets that
#    are no longer set are removed, so a restart never keeps an old one.

mkdir -p "$config_dir" "$secrets_dir" || fail "cannot create $config_dir or $secrets_dir"
chmod 700 "$config_dir" "$secrets_dir"
for name in webhook_bearer_token slack_api_url discord_api_url smtp_password; do
  rm -f "$secrets_dir/$name"
done

# write_secret FILE VALUE: exactly the value, no newline added.
write_secret() {
  printf '%s' "$2" >"$secrets_dir/$1" || fail "cannot write $secrets_dir/$1"
  chmod 600 "$secrets_dir/$1"
}
if is_set ALERT_WEBHOOK_BEARER_TOKEN; then
  write_secret webhook_bearer_token "$ALERT_WEBHOOK_BEARER_TOKEN"
fi
if is_set ALERT_SLACK_WEBHOOK_URL; then
  write_secret slack_api_url "$ALERT_SLACK_WEBHOOK_URL"
fi
if is_set ALERT_DISCORD_WEBHOOK_URL; then
  # Discord accepts Slack's message format on the webhook's URL + /slack (before any query).
  discord_base=${ALERT_DISCORD_WEBHOOK_URL%%\?*}
  discord_query=${ALERT_DISCORD_WEBHOOK_URL#"$discord_base"}
  discord_base=${discord_base%/}
  case $discord_base in
    */slack) ;;
    *) discord_base=$discord_base/slack ;;
  esac
  write_secret discord_api_url "$discord_base$discord_query"
fi
if is_set ALERT_SMTP_PASSWORD; then
  write_secret smtp_password "$ALERT_SMTP_PASSWORD"
fi

# ---------------------------------------------------------------------------------------
# 3. Render the configuration. Only fields that Alertmanager 0.25 already has are used, so
#    Debian bookworm's amtool 0.25 can check what the newer image runs.

if [ -n "$integrations" ]; then
  receiver=notify
else
  receiver=none
fi

{
  cat <<EOF
# Rendered by /etc/alertmanager/entrypoint.sh at container start from balena variables.
# Do not edit: it is rewritten at every start. Secrets are in files beside it, never here.
# Why each value is what it is: alertmanager/README.md in the balena fleet monitor repository.

global:
  # Alertmanager's default. Prometheus sends an end time with every alert, so this only
  # matters for alerts from other clients.
  resolve_timeout: 5m

templates:
  # Notification texts that list the devices of a group (balena.title, balena.text).
  - $(yq "$templates_dir/*.tmpl")

route:
  receiver: $receiver
  # One notification per alert and fleet: when 200 devices of one fleet go offline, that is
  # ONE message listing them, not 200. Alerts about the monitor itself have no fleet_slug
  # and group by alertname alone.
  group_by: [alertname, fleet_slug]
  # ALERT_GROUP_WAIT, default 2m: wait before the first notification of a new group, so that
  # devices that drop out within a couple of rule evaluations (60 s apart) arrive together.
  # The rules already wait 5 minutes or more (their "for"), so this adds little delay.
  group_wait: $(yq "$group_wait")
  # ALERT_GROUP_INTERVAL, default 10m: at most one update of a group in this time when more
  # alerts join it or some resolve, so an outage that grows device by device is a few
  # messages, not one per device.
  group_interval: $(yq "$group_interval")
  # ALERT_REPEAT_INTERVAL, default 12h: a group that is still firing is sent again after this
  # long. Twice a day is a reminder, not a pager that keeps people awake; silence the alert
  # in the UI to stop the reminders.
  repeat_interval: $(yq "$repeat_interval")
EOF
  if [ -n "$integrations" ] && [ -n "$quiet_severities" ]; then
    cat <<EOF
  routes:
    # Below ALERT_MIN_SEVERITY ($min_severity): shown in Grafana and the Alertmanager UI,
    # not sent to anyone.
    - receiver: none
      matchers:
        - $(yq "severity=~\"$quiet_severities\"")
EOF
  fi
  cat <<EOF

inhibit_rules:
  # When the monitor itself is blind (exporter down, API token rejected, crawls failing,
  # data stale; scope="monitor"), alerts about fleets, devices and services are muted: they
  # are likely false (stale or missing data) and would bury the one alert that matters.
  # No "equal": one monitor watches the whole account, so its blindness covers every fleet.
  - source_matchers:
      - 'scope="monitor"'
    target_matchers:
      - 'scope=~"fleet|device|service"'

receivers:
  # No notification: alerts stay visible in Grafana and the Alertmanager UI.
  - name: none
EOF
  if [ -n "$integrations" ]; then
    cat <<EOF
  # Every configured integration, in one receiver. send_resolved: people learn when it is over.
  - name: notify
EOF
  fi
  if is_set ALERT_WEBHOOK_URL; then
    cat <<EOF
    webhook_configs:
      # ALERT_WEBHOOK_URL. Alertmanager 0.25 has no url_file, so the URL is here; its
      # credentials, if any, are in a file (ALERT_WEBHOOK_BEARER_TOKEN).
      - url: $(yq "$ALERT_WEBHOOK_URL")
        send_resolved: true
EOF
    if is_set ALERT_WEBHOOK_BEARER_TOKEN; then
      cat <<EOF
        http_config:
          authorization:
            type: Bearer
            credentials_file: $(yq "$secrets_dir/webhook_bearer_token")
EOF
    fi
  fi
  if is_set ALERT_SLACK_WEBHOOK_URL || is_set ALERT_DISCORD_WEBHOOK_URL; then
    echo "    slack_configs:"
  fi
  if is_set ALERT_SLACK_WEBHOOK_URL; then
    cat <<EOF
      # ALERT_SLACK_WEBHOOK_URL (an incoming webhook; the URL is the secret).
      - api_url_file: $(yq "$secrets_dir/slack_api_url")
EOF
    if is_set ALERT_SLACK_CHANNEL; then
      printf '        channel: %s\n' "$(yq "$ALERT_SLACK_CHANNEL")"
    fi
    cat <<EOF
        send_resolved: true
        title: '{{ template "balena.title" . }}'
        text: '{{ template "balena.text" . }}'
EOF
  fi
  if is_set ALERT_DISCORD_WEBHOOK_URL; then
    cat <<EOF
      # ALERT_DISCORD_WEBHOOK_URL, through Discord's Slack-compatible endpoint (the webhook's
      # URL + /slack): Alertmanager 0.25's discord_configs has no webhook_url_file.
      - api_url_file: $(yq "$secrets_dir/discord_api_url")
        send_resolved: true
        title: '{{ template "balena.title" . }}'
        text: '{{ template "balena.text" . }}'
EOF
  fi
  if is_set ALERT_EMAIL_TO; then
    cat <<EOF
    email_configs:
      # ALERT_EMAIL_TO through ALERT_SMTP_SMARTHOST.
      - to: $(yq "$ALERT_EMAIL_TO")
        from: $(yq "$ALERT_SMTP_FROM")
        smarthost: $(yq "$ALERT_SMTP_SMARTHOST")
        require_tls: $smtp_require_tls
        send_resolved: true
EOF
    if is_set ALERT_SMTP_USERNAME; then
      cat <<EOF
        auth_username: $(yq "$ALERT_SMTP_USERNAME")
        auth_password_file: $(yq "$secrets_dir/smtp_password")
EOF
    fi
    cat <<EOF
        headers:
          Subject: '{{ template "balena.title" . }}'
        text: '{{ template "balena.text" . }}'
EOF
  fi
} >"$config" || fail "cannot write $config"
chmod 600 "$config"

# ---------------------------------------------------------------------------------------
# 4. Say what was configured, once, then start.

if [ -n "$integrations" ]; then
  log "config=$config receiver=notify integrations=$integrations min_severity=$min_severity group_wait=$group_wait group_interval=$group_interval repeat_interval=$repeat_interval external_url=$external_url"
else
  log "no notification receiver is configured (set ALERT_WEBHOOK_URL, ALERT_SLACK_WEBHOOK_URL, ALERT_DISCORD_WEBHOOK_URL or ALERT_EMAIL_TO): alerts are sent nowhere but stay visible in Grafana and the Alertmanager UI at $external_url config=$config"
fi

if [ "${ALERTMANAGER_RENDER_ONLY:-}" = 1 ]; then
  exit 0
fi

# - Storage: silences and the notification log, on a named volume so that they survive
#   container updates (docker-compose.yml mounts it on /alertmanager).
# - Clustering off: one Alertmanager on one device has no peers, and the gossip port (9094)
#   would otherwise listen on every interface.
# - The exporter forwards /alertmanager/... unchanged, so Alertmanager serves under that
#   prefix, and builds its links (UI, notifications) from the public URL.
exec "$bin" \
  --config.file="$config" \
  --storage.path="$storage_dir" \
  --web.listen-address="$listen_address" \
  --web.route-prefix=/alertmanager/ \
  --web.external-url="$external_url" \
  --cluster.listen-address= \
  "$@"
