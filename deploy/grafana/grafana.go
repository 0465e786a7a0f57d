// Package grafana holds tokenmeter's Grafana dashboards, as JSON for the ClickHouse data source
// (grafana-clickhouse-datasource, v4): import them in Grafana, or provision them from this
// folder. Every query reads the roll-ups spend_1d and spend_1m of the database named by the
// dashboard variable "database", and runs on ClickHouse 18.16 as on current releases (the
// tests in this package run each of them against seeded data).
package grafana

import "embed"

// Dashboards holds the dashboard files, *.json.
//
//go:embed *.json
var Dashboards embed.FS
