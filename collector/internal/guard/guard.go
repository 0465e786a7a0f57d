// Package guard bounds what request bodies may cost an HTTP server of the collector module
// (the collector, the proxy): how many may be read at once, and how long one may take to
// arrive. A server that sizes nothing from Content-Length and reads bodies as they come still
// holds a connection and a goroutine per body, and whatever the body sent so far; without a
// bound, a few clients announcing large bodies and sending them one byte at a time hold
// them forever.
package guard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ErrBodyTimeout is wrapped by the error a body's reader returns when the body did not arrive
// within the deadline.
var ErrBodyTimeout = errors.New("the body did not arrive in time")

// Bodies bounds the request bodies h reads: at most max at once, each within timeout of the
// request's start. A request with a body that finds max bodies being read is answered by
// busy (which should say 503 with Retry-After) without being read. A body's slot is freed
// when it has been read to its end, closed, or h returns, whichever comes first, so that a
// long response (a proxied stream) does not hold it. A read past the deadline fails with an
// error wrapping ErrBodyTimeout. Requests without a body pass through.
func Bodies(h http.Handler, max int, timeout time.Duration, busy http.HandlerFunc) http.Handler {
	slots := make(chan struct{}, max)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		select {
		case slots <- struct{}{}:
		default:
			busy(w, r)
			return
		}
		rc := http.NewResponseController(w)
		b := &body{ReadCloser: r.Body, timeout: timeout, free: func() { <-slots }}
		// Not every ResponseWriter has a connection (httptest.ResponseRecorder): then the
		// deadline is not enforced, which only tests see.
		if deadline := time.Now().Add(timeout); rc.SetReadDeadline(deadline) == nil {
			b.deadline = deadline
			// Once the body is read, the connection waits for the response as long as it
			// takes (a proxied stream), as it does without a deadline. Before that, the
			// deadline stays: the server's own reads of what the handler left unread are
			// bounded by it too.
			b.done = func() { _ = rc.SetReadDeadline(time.Time{}) }
		}
		defer b.release()
		// The server keeps its own request: its body is the one it checks, after the
		// handler returns, for what is left unread.
		r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, b))
		r.Body = b
		h.ServeHTTP(w, r)
	})
}

// TimedOut says whether the body of the request whose context is ctx, read under Bodies,
// missed its deadline: it has not been read to its end and the deadline has passed. It is
// false for a request that did not come through Bodies.
//
// A handler needs it to tell a late body from a client that hung up. net/http cancels a
// request's context on any failed read of its connection, the deadline's included, and does
// so inside the failing read, before the read returns: whoever sees the cancellation first
// cannot learn from it, nor yet from the read's error, which it was. http.Transport, which
// forwards a body from a goroutine of its own, is one: when it sees the cancellation first it
// reports context.Canceled, not the error wrapping ErrBodyTimeout.
func TimedOut(ctx context.Context) bool {
	b, ok := ctx.Value(bodyKey{}).(*body)
	return ok && !b.deadline.IsZero() && !b.arrived.Load() && !time.Now().Before(b.deadline)
}

type bodyKey struct{}

type body struct {
	io.ReadCloser
	timeout  time.Duration
	deadline time.Time // zero when not enforced
	arrived  atomic.Bool
	once     sync.Once
	free     func() // frees the body's slot
	done     func() // lifts the deadline, when there is one
}

func (b *body) release() { b.once.Do(b.free) }

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		b.arrived.Store(true)
		if b.done != nil {
			b.done()
		}
		b.release()
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("%w: not all of it within %s", ErrBodyTimeout, b.timeout)
		b.release()
	case err != nil:
		b.release()
	}
	return n, err
}

func (b *body) Close() error {
	b.release()
	return b.ReadCloser.Close()
}
