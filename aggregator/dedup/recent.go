package dedup

import "github.com/tokenmeter/tokenmeter/stage/keyset"

// recent remembers, exactly, the keys and content fingerprints of the last recentSize events
// the writer inserted, so that a copy sent again soon after — a client retrying after a lost
// answer, usually within seconds — is told from a new event without asking ClickHouse. The
// sets alone cannot tell: their 40-bit tags may collide, so every copy they find is confirmed
// there, and the lookup reads every event of the partition in the hours the copy's bucket
// spans (late events make that hours). A 128-bit key match here is the event itself (the
// same assumption as for copies within a batch).
//
// The entries are a ring; a direct-mapped index points into it. An entry overwritten, in the
// ring or in the index, is forgotten: the copy is then looked up as before. Memory: 24 bytes
// an entry and 8 an index slot, 2 MiB per partition.
type recent struct {
	ring  []recentEntry
	index []uint32 // hash of the key → ring position + 1; 0: empty
	next  int
}

type recentEntry struct {
	key keyset.Key
	fp  uint64
}

const recentSize = 1 << 16

func newRecent() *recent {
	return &recent{ring: make([]recentEntry, recentSize), index: make([]uint32, 2*recentSize)}
}

func (r *recent) slot(k keyset.Key) int { return int(k[1] & (2*recentSize - 1)) }

// add records that ClickHouse holds the event of key k with content fingerprint fp.
func (r *recent) add(k keyset.Key, fp uint64) {
	r.ring[r.next] = recentEntry{k, fp}
	r.index[r.slot(k)] = uint32(r.next + 1)
	if r.next++; r.next == recentSize {
		r.next = 0
	}
}

// get returns the fingerprint of the event of key k, when it is among the last remembered.
func (r *recent) get(k keyset.Key) (uint64, bool) {
	p := r.index[r.slot(k)]
	if p == 0 || r.ring[p-1].key != k {
		return 0, false
	}
	return r.ring[p-1].fp, true
}
