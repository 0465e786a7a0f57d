package dedup

import "github.com/tokenmeter/tokenmeter/stage/keyset"

// index maps the keys of one batch to a number, for the passes of Fresh that look up every
// row: an open-addressing table with linear probing, placed by the key's first word (a key is
// a hash already, so nothing is hashed again), and emptied for the next batch by a new
// generation instead of by clearing it. It holds at most half its slots. It replaced Go maps
// there, whose look-ups in tables larger than the cache cost two waits for memory each.
type index struct {
	slots []indexSlot
	gen   uint32 // slots of another generation are empty
	from  int    // the keys touched last: keys[from:next] (see touch)
	next  int
	// touched is where touch's loads end up.
	touched uint32
}

type indexSlot struct {
	key keyset.Key
	v   uint32
	gen uint32
}

// minIndexSlots keeps a small batch's table from being resized at every call.
const minIndexSlots = 1 << 10

// reset empties the index for a batch of n keys.
func (x *index) reset(n int) {
	size := minIndexSlots
	for size < 2*n {
		size *= 2
	}
	if len(x.slots) < size {
		x.slots, x.gen = make([]indexSlot, size), 0
	}
	if x.gen++; x.gen == 0 { // wrapped: a slot of generation 1 may be left from long ago
		clear(x.slots)
		x.gen = 1
	}
	x.from, x.next = 0, 0
}

// find returns the slot of k, and whether k is there; when not, the slot is the empty one
// that put fills.
func (x *index) find(k keyset.Key) (*indexSlot, bool) {
	mask := uint64(len(x.slots) - 1)
	for i := k[0] & mask; ; i = (i + 1) & mask {
		s := &x.slots[i]
		if s.gen != x.gen {
			return s, false
		}
		if s.key == k {
			return s, true
		}
	}
}

// put sets the slot find returned to k with value v.
func (x *index) put(s *indexSlot, k keyset.Key, v uint32) { *s = indexSlot{k, v, x.gen} }

// indexAhead is how many keys touch loads at once: their slots stay within a core's cache
// until they are probed.
const indexAhead = 256

// touch loads the home slots of keys[i] and the chunk after it, unless they were loaded
// already, so that their waits for memory overlap (as keyset.Ahead): call it before finding
// keys[i]. A zero key is a row's without one, and not loaded.
func (x *index) touch(keys []keyset.Key, i int) {
	if i >= x.from && i < x.next {
		return
	}
	x.from, x.next = i, min(i+indexAhead, len(keys))
	mask := uint64(len(x.slots) - 1)
	var sum uint32
	for _, k := range keys[x.from:x.next] {
		if k != (keyset.Key{}) {
			sum += x.slots[k[0]&mask].gen
		}
	}
	x.touched += sum // kept, so that the loads are not left out
}
