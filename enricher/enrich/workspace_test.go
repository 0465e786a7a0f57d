package enrich

import "testing"

// TestWorkspacePayloads checks that the payloads of one fetch are encoded into again by the
// next, each buffer once, and that a buffer not used (its message dead-lettered) goes to the
// next message.
func TestWorkspacePayloads(t *testing.T) {
	var ws workspace
	if b := ws.payload(); b != nil {
		t.Fatalf("first payload = %v, want nil (nothing to reuse yet)", b)
	}
	first := [][]byte{make([]byte, 10, 100), make([]byte, 20, 200)}
	ws.payloads = append(ws.payloads, first...)
	ws.payloads = ws.payloads[:0] // the fetch's payloads are acknowledged

	b := ws.payload()
	if len(b) != 0 || cap(b) != 100 || &b[:1][0] != &first[0][:1][0] {
		t.Fatalf("payload after the fetch: len %d cap %d, want the first buffer, empty", len(b), cap(b))
	}
	// This message is dead-lettered: its buffer is not kept, so the next one gets it again.
	if again := ws.payload(); &again[:1][0] != &first[0][:1][0] {
		t.Fatal("a buffer not kept was not offered again")
	}
	ws.payloads = append(ws.payloads, append(b, "enriched"...))
	b = ws.payload()
	if cap(b) != 200 || &b[:1][0] != &first[1][:1][0] {
		t.Fatalf("second payload: cap %d, want the second buffer", cap(b))
	}
	ws.payloads = append(ws.payloads, b)
	if b := ws.payload(); b != nil {
		t.Fatalf("third payload = cap %d, want nil (no free buffer left)", cap(b))
	}
}
