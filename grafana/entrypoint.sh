#!/bin/sh
# Entrypoint of the grafana service: makes sure Grafana never starts with a default admin
# password, points the links Grafana builds at the device's public URL, then hands over to the
# official image's entrypoint (exec /run.sh "$@", as user grafana, uid 472).
#
# POSIX sh: the image is Alpine, so this runs under busybox sh (scripts/check-grafana runs it
# under busybox sh and dash). The password only ever goes through shell builtins (printf, read,
# test, case), pipes and the environment, never through the arguments of a program: arguments
# are world-readable in /proc/<pid>/cmdline.
#
# Admin password (Grafana's user "admin"):
# - GF_SECURITY_ADMIN_PASSWORD (or GF_SECURITY_ADMIN_PASSWORD__FILE, as the official image
#   reads it) when set: refused when it is "admin" in any case or shorter than 8 characters.
# - otherwise the password kept in $GRAFANA_DATA_DIR/.admin-password (the grafana-data volume),
#   made on the first start from /dev/urandom: 32 characters of [A-Za-z0-9], mode 0600.
# Grafana applies GF_SECURITY_ADMIN_PASSWORD only when it creates its database, so when the
# database exists (a device that ran an older image may still have admin/admin in it) the
# admin password is reset to the chosen one first, with Grafana's own CLI:
#   grafana cli --homepath "$GF_PATHS_HOME" --config "$GF_PATHS_CONFIG" \
#     admin reset-admin-password --password-from-stdin
# (grafana/grafana pkg/cmd/grafana-cli/commands/commands.go: the reset-admin-password command
# has a "password-from-stdin" flag; reset_password_command.go reads one line from stdin; the
# CLI finds /var/lib/grafana through GF_PATHS_DATA, set by the image, as the server does.)
# If that fails, Grafana does not start. So the admin password is always the variable's or the
# file's: a password changed in Grafana's UI is reset at the next start.
#
# Root URL: GF_SERVER_ROOT_URL when set; otherwise the public URL (derive_public_url in
# entrypoint-lib.sh: $PUBLIC_URL, e.g. an openBalena device URL, else
# https://$BALENA_DEVICE_UUID.balena-devices.com, balena injects the uuid) + /grafana/, else
# relative to whatever host Grafana is asked for.
#
# A newline, a tab or another control character in any variable read here stops it with one
# line naming the variable (refuse_control_chars in entrypoint-lib.sh).
#
# Environment for tests (defaults are the image's): GRAFANA_DATA_DIR (GF_PATHS_DATA or
# /var/lib/grafana), GRAFANA_CLI (the grafana binary, found on PATH), GRAFANA_RUN (/run.sh).
set -eu

data_dir=${GRAFANA_DATA_DIR:-${GF_PATHS_DATA:-/var/lib/grafana}}
grafana_bin=${GRAFANA_CLI:-grafana}
run=${GRAFANA_RUN:-/run.sh}
home=${GF_PATHS_HOME:-/usr/share/grafana}
config=${GF_PATHS_CONFIG:-/etc/grafana/grafana.ini}
password_file=$data_dir/.admin-password
min_length=8

log() {
  printf 'grafana-entrypoint: %s\n' "$*" >&2
}
fail() {
  log "refusing to start: $*"
  exit 1
}

# refuse_weak PASSWORD WHERE WHAT-TO-DO: exits when PASSWORD is admin or too short. Only WHERE
# (a variable or file name) is logged, never the password.
refuse_weak() {
  case $1 in
    [Aa][Dd][Mm][Ii][Nn])
      fail "$2 is \"admin\", Grafana's default password; $3" ;;
  esac
  if [ "${#1}" -lt "$min_length" ]; then
    fail "$2 is shorter than $min_length characters; $3"
  fi
  case $1 in
    *[[:cntrl:]]*)
      fail "$2 holds a newline, a tab or another control character; $3" ;;
  esac
}

# The code the entrypoints share (refuse_control_chars, check_http_url, derive_public_url):
# scripts/entrypoint-lib.sh, which the image copies beside this file; in the repository it is
# read from scripts/ (the checks run the entrypoints from there).
here=$(dirname "$0")
[ -r "$here/entrypoint-lib.sh" ] && lib=$here/entrypoint-lib.sh || lib=$here/../scripts/entrypoint-lib.sh
[ -r "$lib" ] || fail "cannot read entrypoint-lib.sh, which entrypoint.sh needs beside it"
# shellcheck source=scripts/entrypoint-lib.sh
. "$lib"

# Every variable this script reads, first: one line naming the first with a control character.
refuse_control_chars GRAFANA_DATA_DIR GF_PATHS_DATA GRAFANA_CLI GRAFANA_RUN GF_PATHS_HOME \
  GF_PATHS_CONFIG GF_SECURITY_ADMIN_PASSWORD GF_SECURITY_ADMIN_PASSWORD__FILE \
  BALENA_DEVICE_UUID GF_DATABASE_PATH GF_SERVER_ROOT_URL PUBLIC_URL

# The same as the official run.sh: a Docker secret named by GF_SECURITY_ADMIN_PASSWORD__FILE.
# Read here so that the checks below see it (naming the file's variable); run.sh then finds
# only the variable. $(...) drops the file's trailing newlines, so a file of one line is fine.
password_from=GF_SECURITY_ADMIN_PASSWORD
if [ -n "${GF_SECURITY_ADMIN_PASSWORD__FILE:-}" ]; then
  if [ -n "${GF_SECURITY_ADMIN_PASSWORD:-}" ]; then
    fail "both GF_SECURITY_ADMIN_PASSWORD and" \
      "GF_SECURITY_ADMIN_PASSWORD__FILE are set; set one"
  fi
  if [ ! -r "$GF_SECURITY_ADMIN_PASSWORD__FILE" ]; then
    fail "cannot read" \
      "GF_SECURITY_ADMIN_PASSWORD__FILE ($GF_SECURITY_ADMIN_PASSWORD__FILE)"
  fi
  GF_SECURITY_ADMIN_PASSWORD=$(cat "$GF_SECURITY_ADMIN_PASSWORD__FILE")
  unset GF_SECURITY_ADMIN_PASSWORD__FILE
  password_from="the file of GF_SECURITY_ADMIN_PASSWORD__FILE"
fi

if [ -n "${BALENA_DEVICE_UUID:-}" ]; then
  where="balena device ssh $BALENA_DEVICE_UUID grafana"
else
  where="balena device ssh <device uuid> grafana"
fi
where="$where (or the grafana service's terminal in the balena dashboard), then:"
where="$where cat $password_file"
set_it="set GF_SECURITY_ADMIN_PASSWORD (a service variable of grafana)"

if [ -n "${GF_SECURITY_ADMIN_PASSWORD:-}" ]; then
  refuse_weak "$GF_SECURITY_ADMIN_PASSWORD" "$password_from" \
    "$set_it to at least $min_length characters (not admin), or delete it to use a generated password"
  password=$GF_SECURITY_ADMIN_PASSWORD
elif [ -s "$password_file" ]; then
  if [ ! -r "$password_file" ]; then
    fail "cannot read $password_file; fix its owner (uid 472) or $set_it"
  fi
  password=
  IFS= read -r password <"$password_file" || true
  refuse_weak "$password" "the password in $password_file" \
    "delete the file to generate a new one, or $set_it"
  chmod 600 "$password_file" 2>/dev/null || true
  log "using the admin password stored in $password_file (user admin; read it with: $where);" \
    "$set_it to choose your own"
else
  # An empty file is what a power cut right after the first start can leave: made anew.
  password=$(LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32) || true
  if [ "${#password}" -ne 32 ]; then
    fail "could not generate an admin password from /dev/urandom; $set_it"
  fi
  tmp=$password_file.tmp.$$
  # umask in a subshell: Grafana itself keeps the image's umask.
  if ! (umask 077 && printf '%s\n' "$password" >"$tmp") 2>/dev/null ||
    ! mv -f "$tmp" "$password_file"; then
    rm -f "$tmp"
    fail "cannot write $password_file (is $data_dir writable by uid 472?);" \
      "$set_it"
  fi
  log "generated an admin password and stored it in $password_file (user admin; read it with:" \
    "$where); $set_it to choose your own"
fi
GF_SECURITY_ADMIN_PASSWORD=$password
export GF_SECURITY_ADMIN_PASSWORD

# Grafana's SQLite database: [database] path, relative to the data directory unless absolute.
database=${GF_DATABASE_PATH:-grafana.db}
case $database in
  /*) ;;
  *) database=$data_dir/$database ;;
esac
if [ -f "$database" ]; then
  # One line on stdin, as bufio.Scanner reads it; the CLI prints only "New Password:" and the
  # outcome, never the password.
  if ! output=$(printf '%s\n' "$password" | "$grafana_bin" cli --homepath "$home" --config "$config" \
    admin reset-admin-password --password-from-stdin 2>&1); then
    reason=$(printf '%s\n' "$output" | sed -e '/^[[:space:]]*$/d' | tail -n 1 | tr -d '\000-\037')
    case $reason in
      *"$password"*) reason="its output is withheld" ;;
    esac
    fail "could not set the admin password in the existing database" \
      "$database with grafana cli admin reset-admin-password (${reason:-no output});" \
      "Grafana would keep its old, possibly default, password"
  fi
fi

if [ -z "${GF_SERVER_ROOT_URL:-}" ]; then
  derive_public_url ""
  if [ -n "$public_url" ]; then
    GF_SERVER_ROOT_URL=$public_url/grafana/
  else
    # Grafana fills these in from the request's host, as before PUBLIC_URL existed.
    GF_SERVER_ROOT_URL='%(protocol)s://%(domain)s:%(http_port)s/grafana/'
  fi
  export GF_SERVER_ROOT_URL
fi

exec "$run" "$@"
