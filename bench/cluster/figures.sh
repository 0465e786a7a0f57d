#!/usr/bin/env bash
# One measured run against `make cluster` (issue 17's figures in docs/deployment.md): starts
# the cluster when it is not running, sends EVENTS synthetic events (bench/cmd/loadgen, SEED),
# waits until the stored count stops changing, and prints events/s from the first POST to the
# last stored event and each process's CPU per stored event (/proc/<pid>/stat), then
# reconciles. Leaves the cluster running (make cluster-stop).
#
#   bench/cluster/figures.sh [EVENTS [RATE [SEED]]]    # defaults 200000, 0 (full speed), 42
set -euo pipefail
cd "$(dirname "$0")/../.."
events=${1:-200000} rate=${2:-0} seed=${3:-42}
make cluster >/dev/null
go build -o bin/loadgen ./bench/cmd/loadgen
declare -A before pid
for f in .data/cluster/*.pid .data/chcluster/*.pid; do pid[$(basename "$f" .pid)]=$(cat "$f"); done
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # clock ticks of user + system time
count() { clickhouse-client --port 9301 -q "SELECT count() FROM tokenmeter.usage_events"; }
n0=$(count)
for n in "${!pid[@]}"; do before[$n]=$(cpu "${pid[$n]}"); done
t0=$(date +%s.%N)
bin/loadgen -events "$events" -rate "$rate" -clients 4 -seed "$seed"
prev=-1 stable=0 tlast=$t0
while ((stable < 2)); do
  n=$(count)
  if [[ $n == "$prev" ]]; then stable=$((stable + 1)); else stable=0 tlast=$(date +%s.%N); fi
  prev=$n
  sleep 2
done
stored=$((prev - n0))
tick_us=$((1000000 / $(getconf CLK_TCK)))
echo "stored $stored events in $(echo "$tlast - $t0" | bc) s (count polled every 2 s): $(echo "$stored / ($tlast - $t0)" | bc) events/s"
for n in $(printf '%s\n' "${!pid[@]}" | sort); do
  printf '%-12s %6.1f us/event\n' "$n" "$(echo "($(cpu "${pid[$n]}") - ${before[$n]}) * $tick_us / $stored" | bc -l)"
done
bin/tokenmeter reconcile -nats nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224 \
  -clickhouse 'clickhouse://127.0.0.1:9301,127.0.0.1:9303,127.0.0.1:9302,127.0.0.1:9304' \
  -database tokenmeter
