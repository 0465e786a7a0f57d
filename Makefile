# tokenmeter — run it: `make run`; test it: `make test`.
SHELL := /bin/bash
MODULES := schemas testkit stage collector enricher aggregator alerter bench deploy
GO ?= go
# Tests reach ClickHouse at $$TOKENMETER_CLICKHOUSE_DSN, or at a local server that this starts.
CH_LOCAL := $(if $(TOKENMETER_CLICKHOUSE_DSN),,deploy/clickhouse/local.sh start)
# Fuzz budgets are execution counts, not durations: a -fuzztime duration races the fuzz
# coordinator's deadline and fails spuriously with "context deadline exceeded" on a busy
# machine (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 20000x

.PHONY: help run demo test test-short fuzz bench lint tidy build clickhouse clickhouse-stop chromium dashboard-assets chaos sustained soak cluster cluster-stop chaos-cluster chaos-clickhouse-cluster chaos-clickhouse-cluster-short

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build every binary into bin/
	@mkdir -p bin
	$(GO) build -o bin/tokenmeter ./deploy/cmd/tokenmeter
	$(GO) build -o bin/collector ./collector/cmd/collector
	$(GO) build -o bin/enricher ./enricher/cmd/enricher
	$(GO) build -o bin/aggregator ./aggregator/cmd/aggregator
	$(GO) build -o bin/alerter ./alerter/cmd/alerter
	$(GO) build -o bin/loadgen ./bench/cmd/loadgen

clickhouse: ## start (or reuse) the local ClickHouse on 127.0.0.1:9000/8123
	@$(CH_LOCAL)

clickhouse-stop: ## stop the local ClickHouse started by `make clickhouse`
	deploy/clickhouse/local.sh stop

chromium: ## install Debian's chromium when missing (the dashboard's browser test needs it)
	@deploy/dashboard/chromium.sh >/dev/null

dashboard-assets: ## rebuild deploy/dashboard/static/app.js from deploy/dashboard/web (needs npm; commit the result)
	cd deploy/dashboard/web && npm ci --no-audit --no-fund && npm run build

run: build clickhouse ## run the whole pipeline in one process (embedded NATS, local ClickHouse)
	bin/tokenmeter run

demo: build clickhouse ## run the pipeline and drive synthetic traffic, printing a spend summary
	bin/tokenmeter run -demo

test: clickhouse chromium ## vet and test every module against real NATS JetStream and ClickHouse
	@for m in $(MODULES); do (cd $$m && GOWORK=off $(GO) build ./... ) || exit 1; done
	$(GO) vet $(addsuffix /...,$(addprefix ./,$(MODULES)))
	$(GO) test -count=1 -timeout 20m $(addsuffix /...,$(addprefix ./,$(MODULES)))
	@$(MAKE) --no-print-directory fuzz

cluster: build ## 3 nats-servers (JetStream, R3), ZooKeeper and 2x2 ClickHouse 18.16 on loopback, the stages as separate processes (deploy/cluster)
	cd bench && $(GO) build -o ../bin/nats-server github.com/nats-io/nats-server/v2
	deploy/cluster/cluster.sh start

cluster-stop: ## stop what `make cluster` started
	deploy/cluster/cluster.sh stop

chaos-cluster: clickhouse ## the stages on an in-process 3-node JetStream cluster, R3: leader shut down, rolling restart, deploy/cluster with a SIGKILLed leader; exact totals (~4 min)
	$(GO) vet -tags chaos ./bench/cluster/
	$(GO) test -tags chaos -count=1 -timeout 10m -v ./bench/cluster/

chaos-clickhouse-cluster: ## the local ClickHouse cluster (deploy/clickhouse/cluster.sh): migrations, shards, exactness, a killed replica, a stopped shard, then make cluster's processes under the same faults and an aggregator moved to another host and back (~7 min; CI runs chaos-clickhouse-cluster-short)
	deploy/clickhouse/cluster.sh start
	$(GO) vet -tags chcluster ./aggregator/aggregate/ ./schemas/chschema/migrate/
	$(GO) vet -tags chaos,chcluster ./bench/cluster/
	$(GO) test -tags chcluster -count=1 -timeout 15m -v -run 'Cluster' ./schemas/chschema/migrate/ ./aggregator/aggregate/
	$(GO) test -tags chaos,chcluster -count=1 -timeout 20m -v -run 'TestMakeClusterClickHouse|TestMakeClusterAggregatorMoves' ./bench/cluster/

chaos-clickhouse-cluster-short: ## CI's share of chaos-clickhouse-cluster: the cluster's migrations and each partition written once to its shard, exact (~2 min)
	deploy/clickhouse/cluster.sh start
	$(GO) vet -tags chcluster ./aggregator/aggregate/ ./schemas/chschema/migrate/
	$(GO) test -tags chcluster -count=1 -timeout 10m -v -run 'TestApplyClusterLive|TestClusterWritesEachPartitionToItsShard' ./schemas/chschema/migrate/ ./aggregator/aggregate/
	deploy/clickhouse/cluster.sh stop

chaos: clickhouse ## fault-injection suite: kills real processes, compares ClickHouse exactly (~4 min)
	$(GO) vet -tags chaos ./bench/chaos/
	$(GO) test -tags chaos -count=1 -timeout 30m -v ./bench/chaos/

# The sustained runs send at SOAK_RATE events/s: two thirds of the ~45,000 events/s one
# partition sustained here for 10 minutes (its 1,000,000-event burst maximum is ~100,000);
# `make soak` held it for 2 hours (docs/benchmarks.md).
SOAK_RATE ?= 30000

sustained: clickhouse ## fault scenario 13: 10 min at SOAK_RATE through streams 100x smaller than the defaults (not in CI)
	$(GO) run ./bench/cmd/scaleout -partitions 1 -events 1000000 -duration 10m -rate $(SOAK_RATE) \
	  -env TOKENMETER_STREAM_MAX_BYTES=85899345,TOKENMETER_HISTORY_MAX_BYTES=21474836

soak: clickhouse ## 2 h at SOAK_RATE with the default configuration: RSS, stream and ClickHouse disk per process (not in CI)
	$(GO) run ./bench/cmd/scaleout -partitions 1 -events 1000000 -duration 2h -rate $(SOAK_RATE)

fuzz: ## run every fuzz target for FUZZTIME executions (default 20000x)
	@set -e; for pkg in $$($(GO) list -f '{{if .TestGoFiles}}{{.Dir}}{{end}}' $(addsuffix /...,$(addprefix ./,$(MODULES)))); do \
	  for t in $$(grep -hoE '^func Fuzz[A-Za-z0-9_]+' $$pkg/*_test.go 2>/dev/null | cut -c6-); do \
	    echo "fuzz $$t in $$pkg"; (cd $$pkg && $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 200x . ) || exit 1; \
	  done; \
	done

bench: clickhouse ## per-stage Go benchmarks, then the end-to-end tables of docs/benchmarks.md
	$(GO) test -run '^$$' -bench . -benchmem ./schemas/... ./stage/... ./collector/... ./enricher/... ./aggregator/... ./alerter/... ./deploy/loadgen/...
	$(GO) run ./bench/cmd/e2e

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $(MODULES))" || { gofmt -l $(MODULES); echo "gofmt needed"; exit 1; }
	$(GO) vet $(addsuffix /...,$(addprefix ./,$(MODULES)))

tidy: ## go mod tidy in every module, each on its own
	@for m in $(MODULES); do (cd $$m && GOWORK=off $(GO) mod tidy) || exit 1; done
