package chwrite

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
)

// queryIDPrefix starts the query id of every INSERT an Inserter sends. The id goes on with
// the stream partitions whose rows the INSERT carries and a nonce that is unique per INSERT:
// "tokenmeter-insert:0,2:5f1c…-17".
const queryIDPrefix = "tokenmeter-insert:"

// queryIDs makes the query ids of one Inserter: a random process nonce and a counter, since
// ClickHouse refuses a query whose id is one it is still running.
type queryIDs struct {
	nonce string
	n     atomic.Uint64
}

func newQueryIDs() queryIDs {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return queryIDs{nonce: hex.EncodeToString(b)}
}

func (q *queryIDs) next(parts []part) string {
	ps := make([]int, 0, len(parts))
	for _, p := range parts {
		if !slices.Contains(ps, p.partition) {
			ps = append(ps, p.partition)
		}
	}
	slices.Sort(ps)
	b := []byte(queryIDPrefix)
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(p), 10)
	}
	b = append(b, ':')
	b = append(b, q.nonce...)
	b = append(b, '-')
	b = strconv.AppendUint(b, q.n.Add(1), 10)
	return string(b)
}

// Partitions returns the stream partitions whose rows the INSERT with query id queryID
// carries; ok is false when the id is not one an Inserter made (an INSERT by hand, or by an
// aggregator older than these ids), whose partitions cannot be known.
func Partitions(queryID string) (partitions []int, ok bool) {
	rest, found := strings.CutPrefix(queryID, queryIDPrefix)
	if !found {
		return nil, false
	}
	list, _, found := strings.Cut(rest, ":")
	if !found || list == "" {
		return nil, false
	}
	for f := range strings.SplitSeq(list, ",") {
		p, err := strconv.Atoi(f)
		if err != nil || p < 0 {
			return nil, false
		}
		partitions = append(partitions, p)
	}
	return partitions, true
}

// QueryID returns a query id for another statement that writes on behalf of partition's
// writer (a roll-up repair): Partitions names partition for it, so that whoever waits for
// the partition's INSERTs to finish waits for it too.
func QueryID(partition int, what string) string {
	ids := newQueryIDs()
	return queryIDPrefix + strconv.Itoa(partition) + ":" + what + "-" + ids.nonce
}
