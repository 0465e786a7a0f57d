#!/usr/bin/env bash
# Runs a local ClickHouse cluster for development and tests, on loopback only: one ZooKeeper
# (Debian's zookeeper package, installed when missing) and 2 shards x 2 replicas of Debian's
# clickhouse-server as four processes, each with a data directory of its own. Every node
# declares the cluster (remote_servers, internal_replication: a Distributed table writes one
# replica per shard and replication copies it), its macros {shard} and {replica}, and the
# ZooKeeper its Replicated* tables coordinate through. The single local server of
# deploy/clickhouse/local.sh (9000/8123) is left alone. deploy/cluster/cluster.sh calls it.
#
#   deploy/clickhouse/cluster.sh start        # idempotent; waits until every node answers
#   deploy/clickhouse/cluster.sh stop         # the four servers, then ZooKeeper
#   deploy/clickhouse/cluster.sh status
#   deploy/clickhouse/cluster.sh stop-node N  # SIGTERM one node (0..3); start brings it back
#   deploy/clickhouse/cluster.sh kill-node N  # SIGKILL one node
#
# Nodes: node N is shard N/2, replica N%2, native port 9301+N, HTTP 8301+N, interserver
# 9311+N. ZooKeeper listens on 2191. Cluster name: tokenmeter (TOKENMETER_CH_CLUSTER).
# Environment: TOKENMETER_CH_CLUSTER_DIR (default .data/chcluster).
set -euo pipefail

dir=${TOKENMETER_CH_CLUSTER_DIR:-.data/chcluster}
cluster=${TOKENMETER_CH_CLUSTER:-tokenmeter}
zkport=2191
nodes=(0 1 2 3)

tcp_port() { echo $((9301 + $1)); }
http_port() { echo $((8301 + $1)); }

running() {
  local f="$dir/$1.pid"
  [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

answers() { curl -fsS "http://127.0.0.1:$(http_port "$1")/ping" >/dev/null 2>&1; }

install_packages() {
  local missing=()
  command -v clickhouse-server >/dev/null 2>&1 || missing+=(clickhouse-server clickhouse-client)
  [[ -f /usr/share/java/zookeeper.jar ]] || missing+=(zookeeper)
  ((${#missing[@]} == 0)) && return 0
  echo "installing Debian's ${missing[*]}" >&2
  local sudo=""
  [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# zk_serving asks ZooKeeper for its stat. A server still starting may take the connection and
# never answer nor close it (CI hung here for 13 minutes once), so each ask gives up after 2 s.
zk_serving() {
  [[ $(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$zkport && printf stat >&3 && cat <&3" 2>/dev/null) == *"Mode: standalone"* ]]
}

start_zookeeper() {
  if ! running zookeeper; then
    mkdir -p "$dir/zookeeper/data" "$dir/logs"
    # The admin server would take port 8080 (the collector's); it is not needed.
    cat >"$dir/zookeeper/zoo.cfg" <<EOF
tickTime=500
initLimit=10
syncLimit=5
dataDir=$dir/zookeeper/data
clientPort=$zkport
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,mntr,stat
autopurge.purgeInterval=1
EOF
    nohup java -Xms64m -Xmx256m -Dzookeeper.log.dir="$dir/logs" -Dzookeeper.root.logger=WARN,CONSOLE \
      -cp "/usr/share/java/zookeeper.jar:/etc/zookeeper/conf" \
      org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zookeeper/zoo.cfg" >>"$dir/logs/zookeeper.log" 2>&1 &
    echo $! >"$dir/zookeeper.pid"
  fi
  # ruok answers before the server takes sessions, and a clickhouse-server 18.16 whose
  # Replicated tables cannot reach ZooKeeper at start-up exits: wait for "Mode:" in stat.
  local until=$((SECONDS + 60))
  while ((SECONDS < until)); do
    zk_serving && return 0
    running zookeeper || break
    sleep 0.2
  done
  echo "zookeeper does not serve on 127.0.0.1:$zkport after 60 s; see $dir/logs/zookeeper.log" >&2
  tail -20 "$dir/logs/zookeeper.log" >&2 || true
  return 1
}

# write_config N writes node N's config.xml and users.xml.
write_config() {
  local n=$1 d="$dir/node-$1"
  mkdir -p "$d/data" "$d/tmp" "$d/user_files" "$d/format_schemas" "$d/log"
  local shards="" s r
  for s in 0 1; do
    shards+="<shard><internal_replication>true</internal_replication>"
    for r in 0 1; do
      shards+="<replica><host>127.0.0.1</host><port>$(tcp_port $((2 * s + r)))</port></replica>"
    done
    shards+="</shard>"
  done
  cat >"$d/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$d/log/server.log</log><errorlog>$d/log/error.log</errorlog><size>100M</size><count>2</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$(http_port "$n")</http_port>
  <tcp_port>$(tcp_port "$n")</tcp_port>
  <interserver_http_port>$((9311 + n))</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <path>$d/data/</path>
  <tmp_path>$d/tmp/</tmp_path>
  <user_files_path>$d/user_files/</user_files_path>
  <format_schema_path>$d/format_schemas/</format_schema_path>
  <users_config>$d/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>134217728</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <timezone>UTC</timezone>
  <background_pool_size>4</background_pool_size>
  <remote_servers><${cluster}>${shards}</${cluster}></remote_servers>
  <zookeeper><node><host>127.0.0.1</host><port>$zkport</port></node><session_timeout_ms>10000</session_timeout_ms></zookeeper>
  <macros><shard>$((n / 2))</shard><replica>r$((n % 2))</replica></macros>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
</yandex>
XML
  # insert_distributed_sync: an INSERT into a Distributed table returns once every shard has
  # its rows, so a writer reading back what it wrote (re-rating, outcomes) finds it.
  # load_balancing in_order: a Distributed read prefers each shard's first replica, the one
  # the aggregators write while it is up, whose data is the freshest.
  # distributed_product_mode global: an IN (SELECT ...) or JOIN over Distributed tables in a
  # query over a Distributed table runs once over the cluster instead of being refused (the
  # views say GLOBAL themselves; ad-hoc queries and the tokenmeter commands' need this).
  cat >"$d/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage><insert_distributed_sync>1</insert_distributed_sync><load_balancing>in_order</load_balancing><distributed_product_mode>global</distributed_product_mode></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
}

start_node() {
  local n=$1
  write_config "$n" # a running node reloads users.xml by itself
  if answers "$n"; then
    return 0
  fi
  nohup clickhouse-server --config-file="$dir/node-$n/config.xml" >"$dir/node-$n/log/stdout.log" 2>&1 &
  echo $! >"$dir/node-$n.pid"
}

await_node() {
  local n=$1
  for _ in $(seq 240); do
    answers "$n" && return 0
    if ! running "node-$n"; then
      break
    fi
    sleep 0.5
  done
  echo "clickhouse node $n did not answer on 127.0.0.1:$(http_port "$n") within 120 s; see $dir/node-$n/log/" >&2
  tail -n 20 "$dir/node-$n/log/error.log" "$dir/node-$n/log/stdout.log" >&2 || true
  return 1
}

start() {
  install_packages
  mkdir -p "$dir/logs"
  dir=$(cd "$dir" && pwd)
  start_zookeeper
  local n
  for n in "${nodes[@]}"; do
    start_node "$n"
  done
  for n in "${nodes[@]}"; do
    await_node "$n"
  done
  cat <<EOF
ClickHouse cluster '$cluster': 2 shards x 2 replicas on loopback, ZooKeeper 127.0.0.1:$zkport
  shard 0: clickhouse://127.0.0.1:9301 (http :8301), clickhouse://127.0.0.1:9302 (http :8302)
  shard 1: clickhouse://127.0.0.1:9303 (http :8303), clickhouse://127.0.0.1:9304 (http :8304)
  flag for the aggregator, alerter and tokenmeter commands:
    -clickhouse-cluster '$cluster=127.0.0.1:9301,127.0.0.1:9302;127.0.0.1:9303,127.0.0.1:9304'
  query:  clickhouse-client --port 9301 -q 'SELECT sum(cost_usd) FROM tokenmeter.usage_events'
  data and logs: $dir
EOF
}

stop_pid() {
  local name=$1 sig=${2:-TERM} pid
  running "$name" || { rm -f "$dir/$name.pid"; return 0; }
  pid=$(cat "$dir/$name.pid")
  kill "-$sig" "$pid"
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name (pid $pid) still running 30s after SIG$sig; sending SIGKILL" >&2
    kill -KILL "$pid"
  fi
  rm -f "$dir/$name.pid"
  echo "stopped $name"
}

stop() {
  local n
  for n in "${nodes[@]}"; do
    stop_pid "node-$n"
  done
  stop_pid zookeeper
}

status() {
  local name
  for name in zookeeper node-0 node-1 node-2 node-3; do
    if running "$name"; then
      echo "$name running (pid $(cat "$dir/$name.pid"))"
    else
      echo "$name stopped"
    fi
  done
}

node_arg() {
  [[ ${1:-} =~ ^[0-3]$ ]] || { echo "node must be 0..3, not '${1:-}'" >&2; exit 2; }
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
stop-node) node_arg "${2:-}"; stop_pid "node-$2" ;;
kill-node) node_arg "${2:-}"; stop_pid "node-$2" KILL ;;
*)
  echo "usage: $0 start|stop|status|stop-node N|kill-node N" >&2
  exit 2
  ;;
esac
