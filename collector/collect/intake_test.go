package collect

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// serve runs c on a real listener until the test ends and returns its address.
func serve(t *testing.T, c *Collector) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// slowBody opens a connection announcing a body of 16,000,000 bytes and sends one.
func slowBody(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\nContent-Length: 16000000\r\n\r\n{", path)
	return conn
}

// answer reads the answer to the request sent on conn: its status, Retry-After and body.
func answer(conn net.Conn) (int, string, string, error) {
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(body), nil
}

// The attack of issue 13: 64 connections announcing Content-Length 16,000,000 and sending one
// byte used to cost 16 MB each (the buffer was sized from the header) and to be held forever.
// Now the buffer grows as bytes arrive, at most MaxBodies bodies are read at once — the
// others are answered 503 with Retry-After at once, unread — and a body that does not
// arrive within BodyTimeout is answered 408.
func TestSlowBodiesAreBounded(t *testing.T) {
	nc := natstest.Connect(t, natstest.Start(t, t.TempDir(), -1))
	js := streamtest.Streams(t, nc, nil)
	const maxBodies, attackers = 32, 64
	c := newCollector(t, nc, Config{MaxBodies: maxBodies, BodyTimeout: 3 * time.Second})
	addr := serve(t, c)
	paths := []string{"/v1/events", "/v1/outcomes", "/v1/traces"}
	const busy = `{"error":"the collector is reading 32 request bodies, its limit: send this one again later"}` + "\n"

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	// Which connections get a slot is the server's to decide: a busy machine runs their
	// goroutines in any order, whatever the order they were sent in. The others are answered at
	// once; once they all are, every slot is held until the deadline.
	type result struct {
		conn        int
		status      int
		retry, body string
		err         error
	}
	results := make(chan result, attackers)
	for i := range attackers {
		conn := slowBody(t, addr, paths[i%3])
		go func() {
			r := result{conn: i}
			r.status, r.retry, r.body, r.err = answer(conn)
			results <- r
		}()
	}
	var refused, late int
	for range attackers {
		r := <-results
		switch {
		case r.err != nil:
			t.Errorf("connection %d: read the answer: %v", r.conn, r.err)
		case r.status == http.StatusServiceUnavailable && r.retry == "1" && r.body == busy:
			if refused++; refused == attackers-maxBodies {
				// Every slot held: a complete request is refused too.
				resp, err := http.Post("http://"+addr+"/v1/events", "application/json", strings.NewReader("{}"))
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable || string(body) != busy {
					t.Errorf("complete request: %d %s, want 503 %s", resp.StatusCode, body, busy)
				}
			}
		case r.status == http.StatusRequestTimeout && strings.Contains(r.body, "read the body: the body did not arrive in time: not all of it within 3s"):
			late++
		default:
			t.Errorf("connection %d: %d (Retry-After %q) %s, want 503 (1) %s or 408", r.conn, r.status, r.retry, r.body, busy)
		}
	}
	if refused != attackers-maxBodies || late != maxBodies {
		t.Errorf("%d connections refused and %d late, want %d and %d", refused, late, attackers-maxBodies, maxBodies)
	}
	runtime.ReadMemStats(&after)
	// Each body held what it sent (one byte) and a 64 KiB read-ahead at most; sized from
	// Content-Length, the 64 bodies took 1 GB.
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 16<<20 {
		t.Errorf("%d MiB allocated while answering the attack, want at most 16 MiB", grown>>20)
	} else {
		t.Logf("%d KiB allocated while answering %d slow bodies", grown>>10, attackers)
	}
	if n := len(streamtest.Messages(t, js, stream.Raw)); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
}

// A 16 MiB array of 8 million tiny elements ("[0,0,…]") used to be unmarshalled element by
// element before its length was checked: 949 MiB allocated for /v1/events, 1245 MiB for
// /v1/outcomes, to answer 413. It is counted first, without decoding.
func TestTinyElementsRefusedBeforeDecoding(t *testing.T) {
	nc := natstest.Connect(t, natstest.Start(t, t.TempDir(), -1))
	js := streamtest.Streams(t, nc, nil)
	c := newCollector(t, nc, Config{})
	body := "[" + strings.Repeat("0,", 8<<20-2) + "0]"
	for path, want := range map[string]string{
		"/v1/events":   `{"error":"too many events in one body: 8388607 events, the limit is 10000"}` + "\n",
		"/v1/outcomes": `{"error":"too many outcomes in one body: 8388607 outcomes, the limit is 10000"}` + "\n",
	} {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		rec := send(t, c.Handler(), path, "application/json", body)
		runtime.ReadMemStats(&after)
		if rec.Code != http.StatusRequestEntityTooLarge || rec.Body.String() != want {
			t.Errorf("%s: %d %s, want 413 %s", path, rec.Code, rec.Body, want)
		}
		// Reading the body (16 MiB, in a buffer that doubles as it grows) is all it costs.
		if grown := after.TotalAlloc - before.TotalAlloc; grown > 64<<20 {
			t.Errorf("%s: %d MiB allocated, want at most 64 MiB", path, grown>>20)
		}
	}
	if n := len(streamtest.Messages(t, js, stream.Raw)); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
}

// One 16 MiB event of 1.5 million tags used to be decoded whole (271 MiB allocated, 0.85 s)
// before Validate counted its tags: its shape is checked first, and it is rejected on its own.
// An event nested millions deep is not JSON the collector reads.
func TestWideAndDeepEventsRefusedBeforeDecoding(t *testing.T) {
	nc := natstest.Connect(t, natstest.Start(t, t.TempDir(), -1))
	js := streamtest.Streams(t, nc, nil)
	c := newCollector(t, nc, Config{})
	var wide strings.Builder
	wide.WriteString(`{"id":"a","provider":"p","model":"m","tags":{`)
	for i := 0; wide.Len() < 16<<20-100; i++ {
		if i > 0 {
			wide.WriteByte(',')
		}
		fmt.Fprintf(&wide, `"%x":""`, i)
	}
	wide.WriteString(`}}`)
	deep := `{"id":"b","provider":"p","model":"m","x":` + strings.Repeat("[", 8<<20-100) + strings.Repeat("]", 8<<20-100) + "}"
	for _, c2 := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"wide", wide.String(), http.StatusAccepted, `{"accepted":0,"rejected":[{"index":0,"error":"not a usage event: holds an object or array of more than 1024 members"}]}` + "\n"},
		{"deep", deep, http.StatusBadRequest, `{"error":"body holds no readable events: no line is a JSON object (line 0: not a JSON event object: nested more than 32 deep)"}` + "\n"},
	} {
		for _, ct := range []string{"application/json", "application/x-ndjson"} {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			rec := send(t, c.Handler(), "/v1/events", ct, c2.body)
			runtime.ReadMemStats(&after)
			if rec.Code != c2.status || rec.Body.String() != c2.want {
				t.Errorf("%s (%s): %d %.300s, want %d %s", c2.name, ct, rec.Code, rec.Body, c2.status, c2.want)
			}
			if grown := after.TotalAlloc - before.TotalAlloc; grown > 64<<20 {
				t.Errorf("%s (%s): %d MiB allocated, want at most 64 MiB", c2.name, ct, grown>>20)
			}
		}
	}
	if n := len(streamtest.Messages(t, js, stream.Raw)); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
}
