#!/usr/bin/env bash
# Writes tokenmeter's ClickHouse users into users.d, with <grants> (recent releases; not 18.16,
# for which deploy/clickhouse/local.sh writes users.xml profiles) for compose (deploy/compose)
# and Kubernetes (deploy/kubernetes), where ClickHouse runs 24.8:
#
#   tokenmeter_writer  what the aggregator and the alerter need: their migrations (CREATE
#                      DATABASE/TABLE/VIEW, ALTER, DROP of replaced views), INSERT and SELECT on
#                      the tokenmeter database, and system.processes (the aggregator waits for
#                      INSERTs of a partition's previous writer to finish)
#   tokenmeter_reader  SELECT on the tokenmeter database only, readonly=2 (per-query settings
#                      but no INSERT, DDL or setting change of the server): the dashboard, Grafana
#   default            reachable from the server's own loopback only, for an administrator's
#                      `clickhouse-client` inside the container; no password crosses the network
#
# The users file holds only each password's SHA-256; ClickHouse reloads it when it changes.
#
#   clickhouse-users.sh [-generate] WRITER_PASSWORD_FILE READER_PASSWORD_FILE USERS_XML
#
# -generate (compose) creates a missing password file (24 random characters, mode 0400, owned
# by the user of the processes that read it: 65532, tokenmeter's image, for the writer; 472,
# Grafana's image, for the reader). Without it (Kubernetes, the files come from the Secret
# clickhouse-users) a missing or empty file is an error.
set -euo pipefail

generate=false
if [ "${1:-}" = -generate ]; then generate=true; shift; fi
if [ $# -ne 3 ]; then
  echo "usage: $0 [-generate] WRITER_PASSWORD_FILE READER_PASSWORD_FILE USERS_XML" >&2
  exit 2
fi
writer_file=$1 reader_file=$2 users=$3

# password FILE OWNER prints the password in FILE, creating it first under -generate.
password() {
  local f=$1 owner=$2
  if [ ! -s "$f" ] && $generate; then
    mkdir -p "$(dirname "$f")"
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$f.tmp")
    chown "$owner" "$f.tmp" 2>/dev/null || true # not root: the file stays the caller's
    chmod 0400 "$f.tmp"
    mv "$f.tmp" "$f"
  fi
  # Trailing line breaks are not part of the password (kubectl create secret --from-file keeps
  # a file's), as the stages read it (-clickhouse-password-file).
  local p=""
  if [ -f "$f" ]; then p=$(cat "$f"; echo x); p=${p%x}; fi
  while [[ $p == *[$'\r\n'] ]]; do p=${p%?}; done
  if [ -z "$p" ]; then
    echo "$0: no password in $f" >&2
    exit 1
  fi
  printf '%s' "$p"
}

sha256() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

# Each password on its own line: set -e sees a failure of password() only in an assignment.
writer=$(password "$writer_file" 65532)
reader=$(password "$reader_file" 472)
writer=$(sha256 "$writer") reader=$(sha256 "$reader")
mkdir -p "$(dirname "$users")"
cat >"$users.tmp" <<XML
<?xml version="1.0"?>
<!-- Written by clickhouse-users.sh; passwords are in the secret files, never here. -->
<clickhouse>
  <profiles>
    <tokenmeter_writer><profile>default</profile></tokenmeter_writer>
    <tokenmeter_reader><profile>default</profile><readonly>2</readonly></tokenmeter_reader>
  </profiles>
  <users>
    <default>
      <networks replace="replace"><ip>::1</ip><ip>127.0.0.1</ip></networks>
    </default>
    <tokenmeter_writer>
      <password_sha256_hex>${writer}</password_sha256_hex>
      <networks><ip>::/0</ip></networks>
      <profile>tokenmeter_writer</profile>
      <quota>default</quota>
      <grants>
        <query>GRANT CREATE DATABASE, CREATE TABLE, CREATE VIEW, ALTER, DROP TABLE, DROP VIEW, INSERT, SELECT ON tokenmeter.*</query>
        <query>GRANT SELECT ON system.processes</query>
      </grants>
    </tokenmeter_writer>
    <tokenmeter_reader>
      <password_sha256_hex>${reader}</password_sha256_hex>
      <networks><ip>::/0</ip></networks>
      <profile>tokenmeter_reader</profile>
      <quota>default</quota>
      <grants>
        <query>GRANT SELECT ON tokenmeter.*</query>
      </grants>
    </tokenmeter_reader>
  </users>
</clickhouse>
XML
chmod 0644 "$users.tmp"
mv "$users.tmp" "$users"
echo "$0: users tokenmeter_writer and tokenmeter_reader written to $users"
