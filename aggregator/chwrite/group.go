package chwrite

import (
	"context"
	"sync"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
)

// Group lets the partition workers of one process share INSERTs: the rows that workers hand
// to Insert at about the same time go to ClickHouse as one block. ClickHouse's cost per row
// falls steeply with the size of a block (fewer parts to write and merge, and the roll-up
// views fold more rows per group), so one block of every partition costs far less than one
// small block per partition.
//
// A round opens with the first Insert after the previous round closed, gathers the Inserts of
// the next Linger (or until every partition has joined) and of the time the previous round's
// INSERT still takes, and then writes them all. Every Insert of a round returns that round's
// error: all of its rows were written, or the caller must find out which ones landed
// (Writer.Existing), as after a failed Inserter.Insert.
type Group struct {
	w       *Inserter
	members int
	linger  time.Duration

	sem  chan struct{} // held by the round that is writing
	mu   sync.Mutex
	open *round // the round taking Inserts; nil when none
}

type round struct {
	parts []part
	full  chan struct{} // closed when every member joined
	done  chan struct{} // closed when the INSERT returned; err is then set
	err   error
}

// NewGroup returns a group writing through w (which it then owns) for members partition
// workers, each round waiting at most linger for the members to join.
func NewGroup(w *Inserter, members int, linger time.Duration) *Group {
	return &Group{w: w, members: members, linger: linger, sem: make(chan struct{}, 1)}
}

// Insert writes rows of partition in the next INSERT of the group and returns its result.
// The INSERT runs under ctx of the Insert that opened the round. The caller must not change
// rows until Insert returns.
func (g *Group) Insert(ctx context.Context, partition int, rows []batch.Row) error {
	if len(rows) == 0 {
		return nil
	}
	g.mu.Lock()
	r := g.open
	leader := r == nil
	if leader {
		r = &round{full: make(chan struct{}), done: make(chan struct{})}
		g.open = r
	}
	r.parts = append(r.parts, part{partition, rows})
	if len(r.parts) == g.members {
		close(r.full)
	}
	g.mu.Unlock()

	if !leader {
		<-r.done
		return r.err
	}
	t := time.NewTimer(g.linger)
	select {
	case <-r.full:
	case <-t.C:
	}
	t.Stop()
	g.sem <- struct{}{} // wait for the previous round's INSERT; latecomers still join
	g.mu.Lock()
	if g.open == r {
		g.open = nil
	}
	g.mu.Unlock()
	r.err = g.w.insertParts(ctx, r.parts)
	<-g.sem
	close(r.done)
	return r.err
}
