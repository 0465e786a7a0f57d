package guard

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// seen is what a handler under Bodies saw of its request.
type seen struct {
	atCancel bool  // TimedOut as the request's context was canceled, maybe before the read returned
	readErr  error // the body's read
	atEnd    bool  // TimedOut once the read returned
}

// watch serves Bodies over a handler that reads the body in a goroutine of its own, as
// http.Transport does, and returns the server and what each request saw. With untilCanceled
// the handler waits for the request's context to be canceled before it waits for the read.
func watch(t *testing.T, timeout time.Duration, untilCanceled bool) (*httptest.Server, <-chan seen) {
	t.Helper()
	seens := make(chan seen, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		read := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, r.Body)
			read <- err
		}()
		var s seen
		if untilCanceled {
			<-r.Context().Done()
			s.atCancel = TimedOut(r.Context())
		}
		s.readErr = <-read
		s.atEnd = TimedOut(r.Context())
		seens <- s
	})
	srv := httptest.NewServer(Bodies(h, 1, timeout, func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	return srv, seens
}

// announce opens a connection to srv and sends a request announcing a body of 16,000,000
// bytes, and one byte of it.
func announce(t *testing.T, srv *httptest.Server) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: guard\r\nContent-Length: 16000000\r\n\r\n{")
	return conn
}

// A late body cancels the request's context, as a client hanging up does, and does so before
// the read that failed returns: TimedOut tells the two apart from the moment the context is
// canceled.
func TestTimedOut(t *testing.T) {
	t.Run("late", func(t *testing.T) {
		srv, seens := watch(t, 100*time.Millisecond, true)
		announce(t, srv)
		s := <-seens
		if !s.atCancel || !s.atEnd || !errors.Is(s.readErr, ErrBodyTimeout) {
			t.Errorf("TimedOut %v at the cancellation, %v after the read; read error %v; want true, true, %v", s.atCancel, s.atEnd, s.readErr, ErrBodyTimeout)
		}
	})
	t.Run("client gone", func(t *testing.T) {
		srv, seens := watch(t, time.Minute, true)
		announce(t, srv).Close()
		s := <-seens
		if s.atCancel || s.atEnd || !errors.Is(s.readErr, io.ErrUnexpectedEOF) {
			t.Errorf("TimedOut %v at the cancellation, %v after the read; read error %v; want false, false, %v", s.atCancel, s.atEnd, s.readErr, io.ErrUnexpectedEOF)
		}
	})
	t.Run("arrived", func(t *testing.T) {
		srv, seens := watch(t, time.Minute, false)
		conn := announce(t, srv)
		fmt.Fprintf(conn, "%s", strings.Repeat(" ", 16000000-1))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		s := <-seens
		if s.atEnd || s.readErr != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("TimedOut %v after the read; read error %v; status %d; want false, nil, 200", s.atEnd, s.readErr, resp.StatusCode)
		}
	})
	if TimedOut(httptest.NewRequest("POST", "/", strings.NewReader("{}")).Context()) {
		t.Error("TimedOut of a request not read under Bodies, want false")
	}
}
