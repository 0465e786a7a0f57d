#!/bin/bash
# bench/chviews.sh — what usage_events and each view on it cost ClickHouse per row.
#
# It fills a source table with 2,000,000 synthetic rows shaped like the benchmark's traffic (a
# minute of event time; 12 teams of 4 features, 12 models, 3 envs, 2 traffic classes, 4
# partitions: ~14,000 roll-up groups; 90 % with a response id, 10 % with a unit), then, for
# each variant, in turn and -n times: creates a fresh database with every migration, drops the
# views the variant leaves out, INSERTs the rows in 40,000-row blocks and waits for the merges
# to end. It prints the ClickHouse server's CPU (utime + stime from /proc) per row.
#
#   bench/chviews.sh [-n rounds] [-rows N]      (ClickHouse at $CH, default 127.0.0.1:8123)
#
# The server must be otherwise idle: everything it does meanwhile is counted.
set -euo pipefail
cd "$(dirname "$0")/.."
CH=${CH:-http://127.0.0.1:8123/}
rounds=2 rows=2000000
while [ $# -gt 0 ]; do
	case $1 in
	-n) rounds=$2; shift 2 ;;
	-rows) rows=$2; shift 2 ;;
	*) echo "usage: $0 [-n rounds] [-rows N]" >&2; exit 2 ;;
	esac
done
q() { curl -sS --fail-with-body "$CH" --data-binary "$1"; }
# the server that answers at $CH, not any other on the machine (a cluster's, CI's)
port=$(sed -E 's#^[a-z]+://([^/@]*@)?[^:/]+:([0-9]+).*#\2#' <<<"$CH")
pid=$(ss -Hltnp "sport = :$port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
[ -r "/proc/${pid:-none}/stat" ] || { echo "$0: no local process listens on port $port to read the CPU of" >&2; exit 1; }
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; } # clock ticks
tick=$(getconf CLK_TCK)

src=chviews_src db=chviews
q "DROP TABLE IF EXISTS default.$src"
q "CREATE TABLE default.$src ENGINE = MergeTree ORDER BY tuple() AS
SELECT
  lower(concat(hex(cityHash64(number, 1)), hex(cityHash64(number, 2)))) AS event_id,
  toDateTime(1765000000 + intDiv(number * 60, $rows)) AS time,
  toUInt16(number % 1000) AS time_ms,
  toDateTime(1765000000 + intDiv(number * 60, $rows)) AS ingested_at,
  toUInt16(cityHash64(number, 3) % 4) AS partition,
  arrayElement(['openai', 'anthropic', 'google'], number % 3 + 1) AS provider,
  concat(provider, '-', toString(cityHash64(number, 4) % 4)) AS model,
  model AS model_priced,
  'chat' AS operation,
  concat('team-', toString(cityHash64(number, 5) % 12)) AS team,
  concat(team, '-feature-', toString(cityHash64(number, 6) % 4)) AS feature,
  arrayElement(['prod', 'staging', 'dev'], cityHash64(number, 7) % 3 + 1) AS env,
  concat('cc-', toString(cityHash64(number, 5) % 12 % 5)) AS cost_center,
  arrayElement(['user', 'batch'], cityHash64(number, 9) % 2 + 1) AS traffic,
  ['region', 'customer'] AS tag_keys,
  [concat('r', toString(number % 4)), concat('c', toString(cityHash64(number, 10) % 1000))] AS tag_values,
  '' AS workflow_id, 'v3' AS prompt_version,
  if(number % 10 = 0, '', concat('resp_', hex(cityHash64(number, 11)), hex(cityHash64(number, 12)))) AS response_id,
  cityHash64(number, 13) % 4000 AS input_tokens,
  cityHash64(number, 14) % 1000 AS output_tokens,
  cityHash64(number, 15) % 500 AS cached_input_tokens,
  toUInt64(0) AS cache_write_tokens, toUInt64(0) AS cache_write_1h_tokens,
  cityHash64(number, 16) % 200 AS reasoning_tokens,
  toDecimal128(cityHash64(number, 17) % 100000, 12) / 1000000 AS cost_usd,
  toDecimal128(0, 12) AS savings_usd,
  toUInt8(1) AS priced, 'p@2026-12-01/standard' AS price_version, 'standard' AS service_tier, 'ok' AS status,
  toUInt32(cityHash64(number, 18) % 5000) AS latency_ms, toUInt8(number % 7 = 0) AS cache_hit,
  toUInt8(0) AS tier_fallback, 'proxy' AS source,
  if(number % 10 = 3, ['web_search'], emptyArrayString()) AS unit_keys,
  if(number % 10 = 3, [toUInt64(1)], emptyArrayUInt64()) AS unit_counts,
  arrayMap(x -> toDecimal128(1, 12) / 100, unit_counts) AS unit_costs_usd,
  toUInt8(0) AS estimated, '' AS estimate_reason
FROM numbers($rows)"

views=(spend_1m_events_mv spend_1d_events_mv unit_spend_1m_events_mv unit_spend_1d_events_mv usage_responses_mv)
# variant name → the views it keeps
declare -A keep=([all]="${views[*]}" [none]="")
variants=(all none)
for v in "${views[@]}"; do
	keep[only_${v%_mv}]=$v
	variants+=("only_${v%_mv}")
done

trial() { # trial VARIANT: prints ns per row
	q "DROP DATABASE IF EXISTS $db"
	q "CREATE DATABASE $db"
	for f in schemas/chschema/migrations/*.sql; do q "$(sed "s/{db}/$db/g" "$f")"; done
	for v in "${views[@]}"; do
		[[ " ${keep[$1]} " == *" $v "* ]] || q "DROP TABLE $db.$v"
	done
	local cols c0 c1 quiet=0
	cols=$(q "SELECT arrayStringConcat(groupArray(name), ',') FROM system.columns WHERE database = '$db' AND table = 'usage_events' AND default_kind != 'MATERIALIZED'")
	sleep 1
	c0=$(cpu)
	q "INSERT INTO $db.usage_events ($cols) SELECT $cols FROM default.$src SETTINGS max_block_size = 40000, min_insert_block_size_rows = 40000, max_threads = 1"
	while [ $quiet -lt 3 ]; do # the merges it started
		sleep 1
		if [ "$(q "SELECT count() FROM system.merges WHERE database = '$db'")" = 0 ]; then quiet=$((quiet + 1)); else quiet=0; fi
	done
	c1=$(cpu)
	echo $(((c1 - c0) * 1000000000 / tick / rows))
}

printf '%-28s %s\n' variant "ClickHouse ns/row, one per round"
declare -A out
for _ in $(seq "$rounds"); do # alternating, so that a slow spell of the machine hits every variant
	for v in "${variants[@]}"; do out[$v]+="$(trial "$v") "; done
done
for v in "${variants[@]}"; do printf '%-28s %s\n' "$v" "${out[$v]}"; done
q "DROP DATABASE IF EXISTS $db"
q "DROP TABLE IF EXISTS default.$src"
