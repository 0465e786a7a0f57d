#!/usr/bin/env bash
# Runs tokenmeter on a local JetStream cluster, on loopback only: three nats-server processes
# forming one cluster, and the collector, enricher, aggregator and alerter as separate
# processes, each connected to all three servers and started with -stream-replicas 3, so that
# every stream, consumer and KV bucket has three replicas and any one server may go down.
# They write to a local ClickHouse cluster — ZooKeeper and 2 shards x 2 replicas, started by
# deploy/clickhouse/cluster.sh — through the aggregator's cluster mode (-clickhouse-cluster),
# or, when TOKENMETER_CLICKHOUSE_DSN is set, to that single server instead. `make cluster`
# builds the binaries into bin/ and runs `deploy/cluster/cluster.sh start`; `make
# cluster-stop` runs stop.
#
#   deploy/cluster/cluster.sh start    # waits until every process is ready, prints how to use it
#   deploy/cluster/cluster.sh stop     # stages first, then the servers (SIGTERM, SIGKILL after 30 s)
#   deploy/cluster/cluster.sh status
#
# Ports: NATS clients 4222-4224, routes 6222-6224, monitoring 8222-8224; collector 8080
# (ops 9101), enricher ops 9102, aggregator ops 9103, alerter ops 9104.
# ClickHouse cluster: native 9301-9304, HTTP 8301-8304, ZooKeeper 2191 (deploy/clickhouse/cluster.sh).
# Environment: TOKENMETER_CLUSTER_DIR (default .data/cluster: the servers' stores, logs and
# pid files), TOKENMETER_BIN (bin), TOKENMETER_CLUSTER_DATABASE (tokenmeter),
# TOKENMETER_CLICKHOUSE_DSN (unset: the local ClickHouse cluster; set: that single server).
set -euo pipefail

dir=${TOKENMETER_CLUSTER_DIR:-.data/cluster}
bin=${TOKENMETER_BIN:-bin}
db=${TOKENMETER_CLUSTER_DATABASE:-tokenmeter}
chcluster=""
if [[ -n ${TOKENMETER_CLICKHOUSE_DSN:-} ]]; then
  dsn=$TOKENMETER_CLICKHOUSE_DSN
else
  chcluster="tokenmeter=127.0.0.1:9301/8301,127.0.0.1:9302/8302;127.0.0.1:9303/8303,127.0.0.1:9304/8304"
  # Readers (alerter, tokenmeter commands) may use any node; the writers among them turn
  # off the Replicated tables' de-duplication themselves (chcluster.WriteOptions).
  dsn="clickhouse://127.0.0.1:9301,127.0.0.1:9303,127.0.0.1:9302,127.0.0.1:9304"
fi
chscript=$(dirname "$0")/../clickhouse/cluster.sh
servers=(0 1 2)
stages=(collector enricher aggregator alerter)
urls=nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224

# running NAME succeeds when NAME's pid file names a live process.
running() {
  local f="$dir/$1.pid"
  [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

# launch NAME CMD... starts CMD in the background, logging to $dir/logs/NAME.log.
launch() {
  local name=$1
  shift
  if running "$name"; then
    echo "$name already running (pid $(cat "$dir/$name.pid"))"
    return
  fi
  nohup "$@" >>"$dir/logs/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

# await NAME URL waits up to 60 s until URL answers 200, failing when NAME exits first.
await() {
  local name=$1 url=$2
  for _ in $(seq 600); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then
      return 0
    fi
    if ! running "$name"; then
      echo "$name exited; the end of $dir/logs/$name.log:" >&2
      tail -20 "$dir/logs/$name.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "$name not ready after 60s ($url); see $dir/logs/$name.log" >&2
  return 1
}

start() {
  for b in nats-server "${stages[@]}"; do
    [[ -x $bin/$b ]] || { echo "$bin/$b is missing: run make cluster" >&2; exit 1; }
  done
  mkdir -p "$dir/logs"
  if [[ -n $chcluster ]]; then
    "$chscript" start >/dev/null
  fi
  local routes="nats://127.0.0.1:6222,nats://127.0.0.1:6223,nats://127.0.0.1:6224"
  for i in "${servers[@]}"; do
    cat >"$dir/nats-$i.conf" <<EOF
server_name: n$i
listen: 127.0.0.1:$((4222 + i))
http: 127.0.0.1:$((8222 + i))
jetstream { store_dir: "$dir/nats-$i" }
cluster {
  name: tokenmeter
  listen: 127.0.0.1:$((6222 + i))
  routes: [${routes//,/, }]
}
EOF
    launch "nats-$i" "$bin/nats-server" -c "$dir/nats-$i.conf"
  done
  # /healthz answers 200 once the server's JetStream is current with the cluster's leader.
  for i in "${servers[@]}"; do
    await "nats-$i" "http://127.0.0.1:$((8222 + i))/healthz"
  done
  # One after another: the stages ensure the same streams at start-up (stream.Ensure copes
  # with a concurrent start, at the price of a few seconds' timeouts).
  launch collector "$bin/collector" -nats "$urls" -addr 127.0.0.1:8080 -ops 127.0.0.1:9101 -stream-replicas 3
  await collector http://127.0.0.1:9101/readyz
  launch enricher "$bin/enricher" -nats "$urls" -ops 127.0.0.1:9102 -stream-replicas 3
  await enricher http://127.0.0.1:9102/readyz
  local agg_cluster=()
  [[ -z $chcluster ]] || agg_cluster=(-clickhouse-cluster "$chcluster")
  launch aggregator "$bin/aggregator" -nats "$urls" -ops 127.0.0.1:9103 -stream-replicas 3 \
    -clickhouse "$dsn" -database "$db" -instance local-cluster "${agg_cluster[@]}"
  await aggregator http://127.0.0.1:9103/readyz
  launch alerter "$bin/alerter" -nats "$urls" -ops 127.0.0.1:9104 -stream-replicas 3 \
    -clickhouse "$dsn" -database "$db"
  await alerter http://127.0.0.1:9104/readyz
  local chline="aggregator   ops :9103 -> ClickHouse $dsn, database $db   alerter ops :9104"
  if [[ -n $chcluster ]]; then
    chline="aggregator   ops :9103 -> ClickHouse cluster of 2 shards x 2 replicas (ZooKeeper :2191):
               shard 0 127.0.0.1:9301, :9302; shard 1 127.0.0.1:9303, :9304 (HTTP 8301-8304)
               partition p -> shard p mod 2, tables ${db}_local.* (Replicated), analysts query $db.* (Distributed)
  alerter      ops :9104, reads $db.* through any node"
  fi
  cat <<EOF
tokenmeter runs on a 3-node JetStream cluster (every stream, consumer and KV bucket R3):
  nats-server  $urls  (monitoring http://127.0.0.1:8222-8224)
  collector    http://127.0.0.1:8080  (ops :9101)   enricher ops :9102
  $chline
Send events:   curl -X POST -H 'Content-Type: application/x-ndjson' --data-binary @events.ndjson http://127.0.0.1:8080/v1/events
               or: bin/loadgen -events 100000 (synthetic traffic to http://127.0.0.1:8080/v1/events)
Spend:         bin/tokenmeter summary -clickhouse '$dsn' -database $db
Query:         clickhouse-client --port 9301 -q 'SELECT sum(cost_usd) FROM $db.usage_events'
Check:         bin/tokenmeter reconcile -nats $urls -clickhouse '$dsn' -database $db
Streams:       curl -s 'http://127.0.0.1:8222/jsz?streams=true' (which server leads each stream)
Take a server down and up:  kill \$(cat $dir/nats-1.pid); deploy/cluster/cluster.sh start
Take a ClickHouse replica down and up:  deploy/clickhouse/cluster.sh stop-node 1; deploy/clickhouse/cluster.sh start
Logs and pids: $dir/logs, $dir/*.pid.   Stop: make cluster-stop
EOF
}

stop() {
  local name pid
  for name in "${stages[@]}" nats-2 nats-1 nats-0; do
    running "$name" || { rm -f "$dir/$name.pid"; continue; }
    pid=$(cat "$dir/$name.pid")
    kill -TERM "$pid"
    for _ in $(seq 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$name (pid $pid) still running 30s after SIGTERM; sending SIGKILL" >&2
      kill -KILL "$pid"
    fi
    rm -f "$dir/$name.pid"
    echo "stopped $name"
  done
  if [[ -n $chcluster ]]; then
    "$chscript" stop
  fi
}

status() {
  local name
  for name in nats-0 nats-1 nats-2 "${stages[@]}"; do
    if running "$name"; then
      echo "$name running (pid $(cat "$dir/$name.pid"))"
    else
      echo "$name stopped"
    fi
  done
  if [[ -n $chcluster ]]; then
    "$chscript" status
  fi
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
*)
  echo "usage: $0 start|stop|status" >&2
  exit 2
  ;;
esac
