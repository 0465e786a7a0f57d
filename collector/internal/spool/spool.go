// Package spool keeps USAGE_RAW messages on disk while they cannot be published, and gives
// them back oldest first, byte for byte — same subject, same Nats-Msg-Id, same event ids — to
// be published again.
//
// A spool is a directory of append-only segment files named by a growing 20-digit sequence
// number (00000000000000000001.seg), plus a LOCK file that keeps a second process from using
// the same directory. Records are framed with a magic, a length and a CRC-32C checksum (see
// AppendRecord). A process writes only to segments it created; a segment is given back whole
// by Oldest and deleted by Remove once every message in it has been published.
//
// Durability: Append writes its records and fsyncs the segment before it returns, and
// creating or deleting a segment fsyncs the directory. A message Append accepted therefore
// survives a crash of the process or of the machine. A crash in the middle of Append can
// leave a torn last record; readers detect it by its length or checksum, skip it and report
// it as Damage — never a panic, never a wrong message. Such a record was not acknowledged by
// Append, so its events are still with the writer.
//
// A Spool is safe for concurrent use.
package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/tokenmeter/tokenmeter/collector/internal/rawbatch"
)

// ErrFull is returned by Append when the next message would take the spool past MaxBytes.
var ErrFull = errors.New("spool is full")

// Defaults applied to the zero values of Options.
const (
	DefaultMaxBytes     = 1 << 30
	DefaultSegmentBytes = 8 << 20
)

const segmentSuffix = ".seg"

// Options configure a Spool.
type Options struct {
	// MaxBytes bounds the bytes of every segment together (default 1 GiB). Append refuses a
	// message that would exceed it; AppendPastLimit does not.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment is started (default 8 MiB). A segment
	// holds at least one message, so it may exceed SegmentBytes by one message. Oldest reads a
	// whole segment into memory.
	SegmentBytes int64
}

func (o Options) withDefaults() Options {
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	return o
}

// Validate reports every invalid value of o, after defaults are applied to zero values.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	if o.MaxBytes < 1 {
		errs = append(errs, fmt.Errorf("spool max bytes (%d) must be positive", o.MaxBytes))
	}
	if o.SegmentBytes < 1 {
		errs = append(errs, fmt.Errorf("spool segment bytes (%d) must be positive", o.SegmentBytes))
	}
	return errors.Join(errs...)
}

// Stats describe what a spool holds.
type Stats struct {
	Segments int
	Messages int
	Events   int
	Bytes    int64
}

// segment is what the spool knows of one segment file.
type segment struct {
	seq              uint64
	bytes            int64
	messages, events int
}

// Spool is an on-disk queue of messages in a directory.
type Spool struct {
	dir  string
	opts Options
	lock *os.File

	mu      sync.Mutex
	segs    []segment // oldest first; the last one is active when active != nil
	active  *os.File  // the segment being appended to, or nil
	nextSeq uint64
	total   Stats
	buf     []byte
}

// Open opens the spool in dir, creating the directory if needed, and takes its lock. It reads
// every existing segment to learn how many messages the spool holds; new messages go to a new
// segment.
func Open(dir string, opts Options) (*Spool, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	if dir == "" {
		return nil, errors.New("open spool: the directory is empty")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Spool{dir: dir, opts: opts.withDefaults(), lock: lock, nextSeq: 1}
	if err := s.scan(); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

// scan learns the existing segments.
func (s *Spool) scan() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("list spool %s: %w", s.dir, err)
	}
	for _, e := range entries { // ReadDir sorts by name: oldest first
		seq, ok := parseSegmentName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			return fmt.Errorf("read spool segment: %w", err)
		}
		msgs, _ := DecodeSegment(data)
		seg := segment{seq: seq, bytes: int64(len(data)), messages: len(msgs)}
		for i := range msgs {
			seg.events += msgs[i].Events
		}
		s.segs = append(s.segs, seg)
		s.add(seg, 1)
		s.nextSeq = seq + 1
	}
	return nil
}

func segmentName(seq uint64) string {
	return fmt.Sprintf("%020d%s", seq, segmentSuffix)
}

func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	return seq, err == nil && seq > 0
}

func (s *Spool) add(seg segment, sign int) {
	s.total.Segments += sign
	s.total.Messages += sign * seg.messages
	s.total.Events += sign * seg.events
	s.total.Bytes += int64(sign) * seg.bytes
}

// Stats returns what the spool holds.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Append writes msgs in order and makes them durable. It returns how many it wrote: all of
// them, or those before the first that did not fit (ErrFull) or could not be written.
func (s *Spool) Append(msgs []rawbatch.Message) (int, error) {
	return s.append(msgs, true)
}

// AppendPastLimit is Append without the MaxBytes bound, for what would otherwise be lost.
func (s *Spool) AppendPastLimit(msgs []rawbatch.Message) (int, error) {
	return s.append(msgs, false)
}

func (s *Spool) append(msgs []rawbatch.Message, bounded bool) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	written := 0
	s.buf = s.buf[:0]
	pending := 0 // messages in s.buf
	pendingEvents := 0
	flush := func() error {
		if pending == 0 {
			return nil
		}
		if err := s.write(s.buf, pending, pendingEvents); err != nil {
			return err
		}
		written += pending
		s.buf, pending, pendingEvents = s.buf[:0], 0, 0
		return nil
	}
	var err error
	for i := range msgs {
		m := &msgs[i]
		if err = checkMessage(m); err != nil {
			err = fmt.Errorf("spool message %s: %w", m.ID, err)
			break
		}
		size := int64(recordSize(m))
		if bounded && s.total.Bytes+int64(len(s.buf))+size > s.opts.MaxBytes {
			err = ErrFull
			break
		}
		if s.active != nil {
			cur := s.segs[len(s.segs)-1].bytes + int64(len(s.buf))
			if cur > 0 && cur+size > s.opts.SegmentBytes {
				if err = flush(); err != nil {
					break
				}
				if err = s.seal(); err != nil {
					break
				}
			}
		}
		if s.active == nil {
			if err = s.create(); err != nil {
				break
			}
		}
		s.buf = AppendRecord(s.buf, m)
		pending++
		pendingEvents += m.Events
	}
	if ferr := flush(); err == nil {
		err = ferr
	}
	if cap(s.buf) > 2*int(s.opts.SegmentBytes) {
		s.buf = nil // do not keep an outsized buffer for the spool's lifetime
	}
	return written, err
}

// create starts a new active segment.
func (s *Spool) create() error {
	seq := s.nextSeq
	f, err := os.OpenFile(filepath.Join(s.dir, segmentName(seq)), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("create spool segment: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return err
	}
	s.nextSeq++
	s.active = f
	s.segs = append(s.segs, segment{seq: seq})
	s.total.Segments++
	return nil
}

// write appends records to the active segment and fsyncs it. A failed write is cut off
// again; if even that fails the segment is sealed, so that nothing is appended after a torn
// record in the same run.
func (s *Spool) write(records []byte, messages, events int) error {
	seg := &s.segs[len(s.segs)-1]
	_, err := s.active.Write(records)
	if err == nil {
		err = s.active.Sync()
	}
	if err != nil {
		if terr := s.active.Truncate(seg.bytes); terr != nil {
			s.seal()
		}
		return fmt.Errorf("write %d messages to spool segment %s: %w", messages, s.active.Name(), err)
	}
	seg.bytes += int64(len(records))
	seg.messages += messages
	seg.events += events
	s.total.Bytes += int64(len(records))
	s.total.Messages += messages
	s.total.Events += events
	return nil
}

// seal closes the active segment: nothing more is appended to it.
func (s *Spool) seal() error {
	if s.active == nil {
		return nil
	}
	err := s.active.Close()
	s.active = nil
	if err != nil {
		return fmt.Errorf("close spool segment: %w", err)
	}
	return nil
}

// Segment is a segment read back.
type Segment struct {
	Seq      uint64
	Messages []rawbatch.Message
	// Damage is what could not be read: torn or corrupt records, skipped.
	Damage Damage
}

// Oldest reads the oldest segment; ok is false when the spool is empty. When the oldest
// segment is the one being appended to, it is sealed first and later messages go to a new
// one.
func (s *Spool) Oldest() (seg Segment, ok bool, err error) {
	s.mu.Lock()
	if len(s.segs) == 0 {
		s.mu.Unlock()
		return Segment{}, false, nil
	}
	seq := s.segs[0].seq
	if len(s.segs) == 1 && s.active != nil {
		err = s.seal()
	}
	s.mu.Unlock()
	if err != nil {
		return Segment{}, false, err
	}
	// The segment is sealed and only Remove deletes it, so it can be read unlocked.
	data, err := os.ReadFile(filepath.Join(s.dir, segmentName(seq)))
	if err != nil {
		return Segment{}, false, fmt.Errorf("read spool segment: %w", err)
	}
	msgs, d := DecodeSegment(data)
	return Segment{Seq: seq, Messages: msgs, Damage: d}, true, nil
}

// Remove deletes segment seq, once every message in it is published.
func (s *Spool) Remove(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for i < len(s.segs) && s.segs[i].seq != seq {
		i++
	}
	if i == len(s.segs) {
		return fmt.Errorf("remove spool segment %d: not in the spool", seq)
	}
	if i == len(s.segs)-1 && s.active != nil {
		if err := s.seal(); err != nil {
			return err
		}
	}
	if err := os.Remove(filepath.Join(s.dir, segmentName(seq))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove spool segment: %w", err)
	}
	s.add(s.segs[i], -1)
	s.segs = append(s.segs[:i], s.segs[i+1:]...)
	return syncDir(s.dir)
}

// Close closes the active segment and releases the directory's lock.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.seal()
	if s.lock != nil {
		err = errors.Join(err, s.lock.Close())
		s.lock = nil
	}
	return err
}

// syncDir makes the creation or removal of a file in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open spool directory to sync it: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync spool directory %s: %w", dir, err)
	}
	return nil
}
