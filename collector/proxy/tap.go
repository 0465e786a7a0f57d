package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/tokenmeter/tokenmeter/collector/normalize"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// tap reads the usage of a response body while the reverse proxy copies it to the client.
// It never changes, delays or fails the bytes it watches: a streamed body goes through
// normalize.Stream as it is read (holding at most one event), any other body is captured up
// to MaxCapture and read when it ends. The event is emitted when the body is closed, which
// the reverse proxy does once the copy ends, completed or not.
type tap struct {
	body io.ReadCloser
	p    *Proxy
	c    *call
	ctx  context.Context // the request's: done when the client is gone

	stream  *normalize.Stream // identity-coded server-sent events
	sse     bool
	gzipped bool
	capture bytes.Buffer // everything else, up to MaxCapture
	tooBig  bool
	eof     bool
	readErr bool // the upstream's body failed (broken off, or canceled with the request)
	once    sync.Once
}

func (p *Proxy) newTap(c *call, resp *http.Response) *tap {
	t := &tap{body: resp.Body, p: p, c: c, ctx: resp.Request.Context()}
	c.body.settle()
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	t.sse = mt == "text/event-stream"
	switch ce := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))); ce {
	case "", "identity":
		if t.sse {
			t.stream = normalize.NewStream(c.format)
		}
	case "gzip":
		t.gzipped = true
	default:
		// narrowEncoding asked for gzip or identity only; an upstream that ignores it is
		// forwarded but cannot be metered.
		t.tooBig = true
	}
	return t
}

func (t *tap) Read(b []byte) (int, error) {
	n, err := t.body.Read(b)
	if n > 0 {
		switch {
		case t.stream != nil:
			t.stream.Write(b[:n])
		case !t.tooBig:
			if int64(t.capture.Len()+n) > t.p.cfg.MaxCapture {
				t.tooBig = true
				t.capture = bytes.Buffer{}
			} else {
				t.capture.Write(b[:n])
			}
		}
	}
	if errors.Is(err, io.EOF) {
		t.eof = true
	} else if err != nil {
		t.readErr = true
	}
	return n, err
}

func (t *tap) Close() error {
	err := t.body.Close()
	t.once.Do(t.finish)
	return err
}

// finish reads the usage and emits the event. A body cut short (the client hung up, the
// upstream broke the connection) is still read: a streamed Anthropic call reports its input
// tokens first, and they are billed whether or not the stream completes. A response whose
// usage is missing or short of what it streamed is emitted estimated (escape.go).
func (t *tap) finish() {
	end := t.p.cfg.Now()
	m := t.p.metrics
	if t.tooBig {
		m.outcomes.WithLabelValues("too_large").Inc()
		return
	}
	u, err := t.read()
	partial, streamed := t.streamed()
	if err != nil {
		outcome := "unreadable"
		switch {
		case !t.eof:
			outcome = "incomplete" // the client hung up or the upstream broke off
		case errors.Is(err, normalize.ErrNoUsage):
			outcome = "no_usage"
		}
		m.outcomes.WithLabelValues(outcome).Inc()
		t.p.cfg.Logger.Debug("no usage read from a response", "route", t.c.route.Prefix, "format", t.c.format.String(), "err", err)
		if reason := t.escapeReason(false, partial.Status, streamed, 0); reason != "" {
			t.p.send(t.c, t.p.escaped(t.c, partial, streamed, reason), end)
		}
		return
	}
	if !t.eof && u.Status == "" {
		u.Status = "incomplete"
	}
	if reason := t.escapeReason(true, u.Status, streamed, u.Usage.Output); reason != "" {
		u = t.p.escaped(t.c, u, streamed, reason)
	}
	t.p.emit(t.c, u, end)
}

func (t *tap) read() (usage event.Usage, err error) {
	if t.stream != nil {
		return t.stream.Usage()
	}
	body := t.capture.Bytes()
	if t.gzipped {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return event.Usage{}, err
		}
		// The decoded size is bounded too: a small gzip body can expand enormously.
		plain, err := io.ReadAll(io.LimitReader(zr, t.p.cfg.MaxCapture+1))
		if err != nil {
			return event.Usage{}, err
		}
		if int64(len(plain)) > t.p.cfg.MaxCapture {
			return event.Usage{}, errors.New("the decompressed response is larger than the capture limit")
		}
		body = plain
	}
	if t.sse {
		t.stream = normalize.NewStream(t.c.format)
		t.stream.Write(body)
		return t.stream.Usage()
	}
	return normalize.Response(t.c.format, body)
}
