// Package streamtest creates tokenmeter's streams for a test and reads back, decoded, what
// landed in them. It sits beside the contract it serves, as net/http/httptest does.
package streamtest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// Streams creates the streams and their consumers as stream.Ensure does with
// stream.DefaultOptions, then changes each stream's configuration by edit when it is not nil,
// and returns a JetStream context. Nothing consumes the working streams' consumers, so
// what is published stays there for Messages to read.
func Streams(tb testing.TB, nc *nats.Conn, edit func(*jetstream.StreamConfig)) jetstream.JetStream {
	tb.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("new JetStream context: %v", err)
	}
	ctx := context.Background()
	if err := stream.Ensure(ctx, js, stream.DefaultOptions); err != nil {
		tb.Fatalf("ensure streams: %v", err)
	}
	if edit == nil {
		return js
	}
	for _, cfg := range stream.Configs(stream.DefaultOptions) {
		s, err := js.Stream(ctx, cfg.Name)
		if err != nil {
			tb.Fatalf("look up stream %s: %v", cfg.Name, err)
		}
		c := s.CachedInfo().Config
		edit(&c)
		if _, err := js.UpdateStream(ctx, c); err != nil {
			tb.Fatalf("update stream %s: %v", cfg.Name, err)
		}
	}
	return js
}

// Msg is one stored message of a stream.
type Msg struct {
	Subject string
	Header  nats.Header
	Rows    []batch.Row
}

// Messages reads every message of the named stream in order and decodes its batch.
func Messages(tb testing.TB, js jetstream.JetStream, name string) []Msg {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		tb.Fatalf("look up stream %s: %v", name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		tb.Fatalf("stream %s info: %v", name, err)
	}
	var out []Msg
	if info.State.Msgs == 0 {
		return out
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			tb.Fatalf("get message %d of %s: %v", seq, name, err)
		}
		rows, err := batch.Decode(m.Data)
		if err != nil {
			tb.Fatalf("decode message %d of %s: %v", seq, name, err)
		}
		out = append(out, Msg{Subject: m.Subject, Header: m.Header, Rows: rows})
	}
	return out
}
