package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/deploy/dashboard"
	"github.com/tokenmeter/tokenmeter/deploy/natsauth"
	"github.com/tokenmeter/tokenmeter/schemas/redact"
	"github.com/tokenmeter/tokenmeter/stage/natsconn"
	"github.com/tokenmeter/tokenmeter/stage/ops"
)

// dashboardAccess says who may use the dashboard: the host names it answers besides
// localhost and IP addresses (comma-separated), and the file holding the token that every
// request must carry ("" = none).
type dashboardAccess struct {
	hosts, tokenFile string
}

// config fills cfg's Hosts and Token.
func (a dashboardAccess) config(cfg *dashboard.Config) error {
	for _, h := range strings.Split(a.hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.Hosts = append(cfg.Hosts, h)
		}
	}
	if a.tokenFile == "" {
		return nil
	}
	data, err := os.ReadFile(a.tokenFile)
	if err != nil {
		return fmt.Errorf("dashboard token: %w", err)
	}
	if cfg.Token = strings.TrimSpace(string(data)); cfg.Token == "" {
		return fmt.Errorf("dashboard token: %s is empty", a.tokenFile)
	}
	return nil
}

// startDashboard serves the dashboard on addr until ctx is done, reading ClickHouse at dsn and
// the alerter's buckets through nc (nil: no alerts or budgets), to the requests access lets
// in. It returns the address it listens on once it does.
func startDashboard(ctx context.Context, addr, dsn, db string, nc *nats.Conn, access dashboardAccess, log *slog.Logger) (net.Addr, <-chan error, error) {
	cfg := dashboard.Config{Database: db, Logger: log}
	if err := access.config(&cfg); err != nil {
		return nil, nil, err
	}
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("dashboard: ClickHouse DSN: %w", redact.DSNError(err, dsn))
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("dashboard: open ClickHouse: %w", err)
	}
	var js jetstream.JetStream
	if nc != nil {
		if js, err = jetstream.New(nc); err != nil {
			_ = conn.Close()
			return nil, nil, fmt.Errorf("dashboard: JetStream: %w", err)
		}
	}
	d, err := dashboard.New(cfg, conn, js)
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("listen for the dashboard on %s: %w", addr, err)
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() && cfg.Token == "" {
		log.Warn("the dashboard listens beyond loopback without a token: anyone who reaches it reads every team's spend; set a token file", "addr", ln.Addr().String())
	}
	done := make(chan error, 1)
	go func() {
		err := d.Serve(ctx, ln)
		_ = conn.Close()
		done <- err
	}()
	return ln.Addr(), done, nil
}

// runDashboard implements "tokenmeter dashboard": the dashboard alone, against a ClickHouse and
// (for alerts and budgets) a NATS server that the pipeline runs elsewhere.
func runDashboard(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dashboard", flag.ContinueOnError)
	addr := fs.String("addr", envOr("TOKENMETER_DASHBOARD_ADDR", "127.0.0.1:8090"), "dashboard HTTP address")
	dsn := fs.String("clickhouse", envOr("TOKENMETER_CLICKHOUSE_DSN", "clickhouse://127.0.0.1:9000"), "ClickHouse DSN")
	passwordFile := fs.String("clickhouse-password-file", os.Getenv("TOKENMETER_CLICKHOUSE_PASSWORD_FILE"), "file holding the password of the ClickHouse DSN's user (tokenmeter_reader), kept out of the DSN")
	db := fs.String("database", envOr("TOKENMETER_DATABASE", "tokenmeter"), "ClickHouse database")
	var access dashboardAccess
	fs.StringVar(&access.hosts, "host", os.Getenv("TOKENMETER_DASHBOARD_HOSTS"), "host names the dashboard answers besides localhost and IP addresses, comma-separated (others get 421)")
	fs.StringVar(&access.tokenFile, "token-file", os.Getenv("TOKENMETER_DASHBOARD_TOKEN_FILE"), `file holding the token every request must carry (bearer, or the basic-auth password); "" = none`)
	natsURL := fs.String("nats", os.Getenv("TOKENMETER_NATS_URL"), `NATS URL holding the alerter's buckets ("" = show no alerts or budgets)`)
	var natsCfg natsconn.Config
	natsEnv := natsFlags(fs, &natsCfg, natsauth.Dashboard)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := natsEnv(); err != nil {
		return fmt.Errorf("invalid environment: %w", err)
	}
	chDSN, err := ops.ClickHouseDSN(*dsn, *passwordFile)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var nc *nats.Conn
	if *natsURL != "" {
		var err error
		if nc, err = natsconn.Connect(*natsURL, "tokenmeter-dashboard", natsCfg, nats.MaxReconnects(-1)); err != nil {
			return err
		}
		defer nc.Close()
	}
	at, done, err := startDashboard(ctx, *addr, chDSN, *db, nc, access, log)
	if err != nil {
		return err
	}
	fmt.Printf("dashboard: http://%s/\n", at)
	err = <-done
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
