package dedup

import (
	"testing"

	"github.com/tokenmeter/tokenmeter/stage/keyset"
)

// The index finds what was put in this batch only: keys that share a home slot, a table grown
// for a larger batch, and a generation counter that wraps around all forget the batch before.
func TestIndex(t *testing.T) {
	var x index
	// Keys whose first words collide in any table size probe past each other.
	same := []keyset.Key{{7, 1}, {7, 2}, {7 + 1<<20, 3}, {8, 4}}
	x.reset(len(same))
	for i, k := range same {
		s, ok := x.find(k)
		if ok {
			t.Fatalf("key %v found before it was put", k)
		}
		x.put(s, k, uint32(10+i))
	}
	for i, k := range same {
		if s, ok := x.find(k); !ok || s.v != uint32(10+i) {
			t.Errorf("find(%v) = %d, %v; want %d, true", k, s.v, ok, 10+i)
		}
	}
	if _, ok := x.find(keyset.Key{7, 5}); ok {
		t.Errorf("a key never put is found")
	}

	x.reset(3_000) // grown: a fresh table
	if len(x.slots) != 8192 {
		t.Errorf("%d slots for 3,000 keys, want 8192 (at most half full)", len(x.slots))
	}
	for _, k := range same {
		if _, ok := x.find(k); ok {
			t.Errorf("key %v of the last batch found after reset", k)
		}
	}
	for i := range 3_000 {
		k := keyset.KeyOf(string(rune(i)))
		s, _ := x.find(k)
		x.put(s, k, uint32(i))
	}
	x.reset(10) // smaller: the table stays, its keys are forgotten
	if len(x.slots) != 8192 {
		t.Errorf("%d slots after a smaller batch, want the 8192 kept", len(x.slots))
	}
	if _, ok := x.find(keyset.KeyOf(string(rune(5)))); ok {
		t.Errorf("a key of the last batch found after reset")
	}

	var y index
	y.reset(10) // generation 1
	s, _ := y.find(same[0])
	y.put(s, same[0], 1)
	y.gen = ^uint32(0)
	y.reset(10) // wraps around to generation 1 again
	if y.gen != 1 {
		t.Fatalf("generation %d after wrapping, want 1", y.gen)
	}
	if _, ok := y.find(same[0]); ok {
		t.Errorf("a key put 2^32 batches ago is found once the generation wrapped")
	}
}
