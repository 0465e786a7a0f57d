#!/usr/bin/env bash
# Starts a local ClickHouse server for development and tests: Debian's clickhouse-server
# (installed when missing), listening on loopback only, with a data directory of its own.
# A server already answering on the chosen HTTP port is reused.
#
# Users (users.xml): "default", without a password and reachable from loopback only, for the
# README's clickhouse-client and the tests; and two least-privilege users for a deployment to
# copy — tokenmeter_writer (what the aggregator and the alerter need: migrations, INSERT,
# SELECT) and tokenmeter_reader (readonly=2: SELECT and per-query settings, no INSERT, no DDL;
# for the dashboard and Grafana). Their passwords are generated once into
# $dir/secrets/{writer,reader}.password (mode 0600, never committed); users.xml holds only
# their SHA-256. Starting again rewrites users.xml when it changed, and a running server
# started by this script reloads it by itself within seconds (no restart).
#
#   deploy/clickhouse/local.sh start   # idempotent; waits until the server answers
#   deploy/clickhouse/local.sh stop
#
# Environment: TOKENMETER_CH_DIR (default .data/clickhouse), TOKENMETER_CH_TCP_PORT (9000),
# TOKENMETER_CH_HTTP_PORT (8123).
set -euo pipefail

dir=${TOKENMETER_CH_DIR:-.data/clickhouse}
tcp=${TOKENMETER_CH_TCP_PORT:-9000}
http=${TOKENMETER_CH_HTTP_PORT:-8123}

answers() { curl -fsS "http://127.0.0.1:${http}/ping" >/dev/null 2>&1; }

# password NAME prints the password of tokenmeter_NAME, generating it on first use.
password() {
  local f="$dir/secrets/$1.password"
  if [ ! -s "$f" ]; then
    (umask 077; mkdir -p "$dir/secrets"; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$f.tmp" && mv "$f.tmp" "$f")
  fi
  cat "$f"
}

sha256() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

# write_users writes users.xml (atomically, and only when it changes, so that a running
# server reloads it at most once).
write_users() {
  local writer reader
  writer=$(sha256 "$(password writer)")
  reader=$(sha256 "$(password reader)")
  cat >"$dir/users.xml.tmp" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles>
    <default><max_memory_usage>8000000000</max_memory_usage></default>
    <tokenmeter_writer><max_memory_usage>8000000000</max_memory_usage></tokenmeter_writer>
    <tokenmeter_reader><max_memory_usage>4000000000</max_memory_usage><readonly>2</readonly><allow_ddl>0</allow_ddl></tokenmeter_reader>
  </profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default>
    <tokenmeter_writer><password_sha256_hex>${writer}</password_sha256_hex><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>tokenmeter_writer</profile><quota>default</quota></tokenmeter_writer>
    <tokenmeter_reader><password_sha256_hex>${reader}</password_sha256_hex><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>tokenmeter_reader</profile><quota>default</quota></tokenmeter_reader>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
  if cmp -s "$dir/users.xml.tmp" "$dir/users.xml"; then
    rm -f "$dir/users.xml.tmp"
  else
    mv "$dir/users.xml.tmp" "$dir/users.xml"
  fi
}

install_server() {
  command -v clickhouse-server >/dev/null 2>&1 && return 0
  echo "clickhouse-server not found: installing Debian's package" >&2
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
}

start() {
  if answers; then
    if [ -f "$dir/config.xml" ]; then
      write_users # ours: it reloads users.xml by itself
    fi
    echo "clickhouse: reusing the server on 127.0.0.1:${http} (native ${tcp})"
    return 0
  fi
  install_server
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log"
  cat >"$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$dir/log/server.log</log><errorlog>$dir/log/error.log</errorlog><size>100M</size><count>2</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>${http}</http_port>
  <tcp_port>${tcp}</tcp_port>
  <interserver_http_port>$((tcp + 9))</interserver_http_port>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <format_schema_path>$dir/format_schemas/</format_schema_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <timezone>UTC</timezone>
</yandex>
XML
  write_users
  # clickhouse-server writes --pid-file only when it daemonizes; record the pid ourselves.
  nohup clickhouse-server --config-file="$dir/config.xml" >"$dir/log/stdout.log" 2>&1 &
  echo $! >"$dir/server.pid"
  for _ in $(seq 1 120); do
    if answers; then echo "clickhouse: started on 127.0.0.1:${http} (native ${tcp}), data in $dir"; return 0; fi
    sleep 0.5
  done
  echo "clickhouse: did not answer on 127.0.0.1:${http} within 60 s; see $dir/log/" >&2
  tail -n 20 "$dir/log/error.log" "$dir/log/stdout.log" >&2 || true
  return 1
}

stop() {
  [ -f "$dir/server.pid" ] || { echo "clickhouse: no pid file in $dir"; return 0; }
  local pid; pid=$(cat "$dir/server.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  # A server still shutting down after 30 s (18.16 can wait on a running query) is killed:
  # "stopped" must mean no process answers, or holds a connection open, any more.
  if kill -0 "$pid" 2>/dev/null; then
    echo "clickhouse: still running 30 s after SIGTERM; sending SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$dir/server.pid"
  echo "clickhouse: stopped"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
