#!/bin/sh
# Entrypoint of the rsession db-proxy image: the session pod's PostgreSQL credential proxy.
#
# The operator runs this container as a sidecar of the R container whenever an RSession has
# spec.database. It alone receives the database Secret's keys (as the environment variables
# below); it writes a PgBouncer configuration holding them into its own memory-backed folder
# (mode 0600, not mounted into the R container) and runs PgBouncer in the foreground on
# 127.0.0.1:6432. R connects there without a password (auth_type any: the pod's loopback is
# reachable only from inside the pod); PgBouncer logs in to the real server as DB_USER.
#
# Environment (from the Secret unless noted):
#   DB_HOST (required), DB_PORT (default 5432), DB_USER (required), DB_PASSWORD,
#   DB_SSLMODE (PgBouncer's server_tls_sslmode; default prefer),
#   DB_READ_ONLY (set by the operator from spec.database.readOnly; "true" sets
#     default_transaction_read_only on every server connection),
#   PROXY_DIR (default /run/db-proxy), PROXY_PORT (default 6432).
set -eu
umask 077

die() { echo "db-proxy: $*" >&2; exit 1; }

# trim <value>: without surrounding spaces, tabs and line breaks, as the operator reads the
# Secret's host, port and sslmode when it validates them and writes the NetworkPolicy.
# (sed joins all lines first, so that a leading or trailing line break goes too.)
trim() { printf '%s' "$1" | sed -e ':a' -e '$!{N;ba' -e '}' -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//'; }

dir="${PROXY_DIR:-/run/db-proxy}"
port="${PROXY_PORT:-6432}"
host="$(trim "${DB_HOST:-}")"
db_port="$(trim "${DB_PORT:-}")"
db_port="${db_port:-5432}"
user="${DB_USER:-}"
sslmode="$(trim "${DB_SSLMODE:-}")"
sslmode="${sslmode:-prefer}"
read_only="${DB_READ_ONLY:-true}"

[ -n "$host" ] || die "the database Secret has no 'host' key"
[ -n "$user" ] || die "the database Secret has no 'user' key"
# Values go into PgBouncer's connection string; quoting handles spaces and quotes, but a line
# break would end the ini entry, so it is refused with a message naming the key (never the value).
nl='
'
for value in "host:$host" "user:$user" "password:${DB_PASSWORD:-}"; do
  case "$value" in *"$nl"*) die "the database Secret's '${value%%:*}' holds a line break" ;; esac
done
case "$db_port" in ''|*[!0-9]*) die "the database Secret's 'port' is not a number" ;; esac
case "$sslmode" in disable|allow|prefer|require|verify-ca|verify-full) ;;
  *) die "the database Secret's 'sslmode' must be one of disable, allow, prefer, require, verify-ca, verify-full" ;;
esac
case "$read_only" in true|false) ;; *) die "DB_READ_ONLY must be true or false" ;; esac

# quote <value>: a PgBouncer connection-string value in single quotes, quotes doubled.
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }

entry="host=$(quote "$host") port=$db_port user=$(quote "$user")"
[ -z "${DB_PASSWORD:-}" ] || entry="$entry password=$(quote "$DB_PASSWORD")"
if [ "$read_only" = true ]; then
  # Runs once on each new server connection; server_lifetime = 0 below means a server
  # connection serves one client connection only, so no client inherits another's settings.
  entry="$entry connect_query='SET default_transaction_read_only = on'"
fi

mkdir -p "$dir"
conf="$dir/pgbouncer.ini"
cat >"$conf.tmp" <<INI
[databases]
; Any database name the client asks for, on the Secret's server, as the Secret's user.
* = $entry

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = any
pool_mode = session
server_lifetime = 0
server_reset_query = DISCARD ALL
server_tls_sslmode = $sslmode
server_tls_ca_file = /etc/ssl/certs/ca-certificates.crt
; JDBC (DatabaseConnector, HADES) sends extra_float_digits at start-up.
ignore_startup_parameters = extra_float_digits
max_client_conn = 64
default_pool_size = 32
log_connections = 1
log_disconnections = 1
log_pooler_errors = 1
INI
mv "$conf.tmp" "$conf"
echo "db-proxy: PgBouncer on 127.0.0.1:$port for $user@$host:$db_port (sslmode $sslmode, read-only $read_only)" >&2
# The configuration file now holds the password: the environment is not passed on.
exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /usr/sbin/pgbouncer "$conf"
