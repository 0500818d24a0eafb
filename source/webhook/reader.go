package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/audittail/audittail/source"
)

// position is what a webhook input's Position.State holds: the spool it
// names and the logical offset (bytes ever appended before it) just past
// a line.
type position struct {
	Spool  string `json:"spool"`
	Offset int64  `json:"offset"`
}

// CheckPosition validates a Position.State this source encoded (the
// checkpoint store checks every position when it opens).
func CheckPosition(state json.RawMessage) error {
	_, err := decodePosition(state)
	return err
}

// Offset returns the spool and offset a Position.State names.
func Offset(state json.RawMessage) (spool string, off int64, err error) {
	p, err := decodePosition(state)
	return p.Spool, p.Offset, err
}

func decodePosition(state json.RawMessage) (position, error) {
	var p position
	d := json.NewDecoder(bytes.NewReader(state))
	d.DisallowUnknownFields()
	if err := d.Decode(&p); err != nil {
		return p, fmt.Errorf("webhook position %s: %w", state, err)
	}
	if p.Spool == "" || p.Offset < 0 {
		return p, fmt.Errorf("webhook position %s: want a spool id and an offset >= 0", state)
	}
	return p, nil
}

// ReaderConfig configures a Reader of the spool.
type ReaderConfig struct {
	// A chunk closes on MaxEvents lines, MaxBytes bytes, or MaxWait after
	// its first line, whichever comes first (a single line longer than
	// MaxBytes makes a chunk of its own).
	MaxEvents int
	MaxBytes  int
	MaxWait   time.Duration
	// Pool is the number of chunks the reader may have out at once.
	Pool int
	// CutAt, if set, is a position where a chunk must end (see CutAt).
	CutAt source.Position
	Log   *slog.Logger
	Stats *source.Stats
	Now   func() time.Time
}

func (c *ReaderConfig) defaults() {
	if c.MaxEvents == 0 {
		c.MaxEvents = 1000
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 4 << 20
	}
	if c.MaxWait == 0 {
		c.MaxWait = time.Second
	}
	if c.Pool == 0 {
		c.Pool = 4
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Stats == nil {
		c.Stats = &source.Stats{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Reader reads the spool from a position, in order, waiting for appends.
// It implements source.Reader and source.Aligner. Next is called from
// one goroutine at a time; Stop and CutAt from any.
type Reader struct {
	s     *Spool
	cfg   ReaderConfig
	pool  *source.Pool
	start source.Position
	off   int64
	cut   atomic.Pointer[source.Position]

	stop     chan struct{}
	stopOnce sync.Once

	f     *os.File // the segment being read
	fBase int64
	fSize int64 // its size when opened (final unless it is the last)
}

var (
	_ source.Reader  = (*Reader)(nil)
	_ source.Aligner = (*Reader)(nil)
)

// Open returns a reader of the spool from pos (a Position.State this
// source encoded; nil: from the oldest event the spool holds). A position
// of another spool (the volume was replaced) or before what the spool
// holds (segments deleted by hand) is logged, and the lost bytes counted;
// the reader then starts at the oldest event there is.
func (s *Spool) Open(cfg ReaderConfig, pos json.RawMessage) (*Reader, error) {
	cfg.defaults()
	r := &Reader{s: s, cfg: cfg, pool: source.NewPool(cfg.Pool), stop: make(chan struct{})}
	r.CutAt(cfg.CutAt)
	first, end := s.first.Load(), s.Synced()
	r.off = first
	if pos != nil {
		p, err := decodePosition(pos)
		if err != nil {
			return nil, err
		}
		switch {
		case p.Spool != s.id:
			cfg.Log.Warn("data lost: the checkpoint names another spool (its volume was replaced or emptied?); reading this one from its oldest event",
				"spool", s.dir, "checkpoint_spool", p.Spool, "spool_id", s.id)
			cfg.Stats.LostFiles.Add(1)
		case p.Offset < first:
			cfg.Log.Warn("data lost: spool segments were deleted before every output read them; reading from the oldest event left",
				"spool", s.dir, "lost_bytes", first-p.Offset)
			cfg.Stats.LostBytes.Add(first - p.Offset)
			cfg.Stats.LostFiles.Add(1)
		case p.Offset > end:
			cfg.Log.Warn("the checkpoint is past the end of the spool (the spool lost fsynced data?); reading from its end",
				"spool", s.dir, "checkpoint_offset", p.Offset, "spool_end", end)
			r.off = end
		default:
			r.off = p.Offset
		}
	}
	r.start = r.position(r.off)
	return r, nil
}

func (r *Reader) position(off int64) source.Position {
	st, _ := json.Marshal(position{Spool: r.s.id, Offset: off})
	return source.Position{Stream: r.s.id, Offset: off, State: st}
}

// Start returns the position before the first chunk.
func (r *Reader) Start() source.Position { return r.start }

// Pool returns the reader's chunk pool.
func (r *Reader) Pool() *source.Pool { return r.pool }

// CutAt makes the reader end a chunk exactly at p if a line ends there.
func (r *Reader) CutAt(p source.Position) {
	if p.Stream == "" {
		r.cut.Store(nil)
		return
	}
	r.cut.Store(&p)
}

// Stop ends the reader: Next returns what it has read and then io.EOF.
func (r *Reader) Stop() { r.stopOnce.Do(func() { close(r.stop) }) }

// Close stops the reader and closes its segment. Chunks already returned
// stay valid until released.
func (r *Reader) Close() error {
	r.Stop()
	r.closeFile()
	return nil
}

// Next returns the next chunk (see source.Reader).
func (r *Reader) Next(ctx context.Context) (*source.Chunk, error) {
	select {
	case <-r.stop:
		r.closeFile()
		return nil, io.EOF
	default:
	}
	c, err := r.getChunk(ctx)
	if err != nil {
		return nil, err
	}
	var deadline time.Time
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		changed := r.s.changed()
		full, err := r.fill(c)
		if err != nil {
			c.Release()
			return nil, err
		}
		if full {
			return r.hand(c, false), nil
		}
		var due <-chan time.Time
		if c.Len() > 0 {
			if deadline.IsZero() {
				deadline = r.cfg.Now().Add(r.cfg.MaxWait)
				timer = time.NewTimer(r.cfg.MaxWait)
			}
			due = timer.C
		}
		select {
		case <-changed:
		case <-due:
			return r.hand(c, true), nil
		case <-r.stop:
			if c.Len() > 0 {
				return r.hand(c, true), nil
			}
			c.Release()
			r.closeFile()
			return nil, io.EOF
		case <-ctx.Done():
			c.Release()
			return nil, ctx.Err()
		}
	}
}

func (r *Reader) getChunk(ctx context.Context) (*source.Chunk, error) {
	if c := r.pool.TryGet(); c != nil {
		return c, nil
	}
	// Every chunk is out (an output is slow or down): wait for one, or
	// for Stop.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	c, err := r.pool.Get(ctx, 0, nil)
	if err != nil {
		select {
		case <-r.stop:
			r.closeFile()
			return nil, io.EOF
		default:
		}
		return nil, err
	}
	return c, nil
}

func (r *Reader) hand(c *source.Chunk, atEnd bool) *source.Chunk {
	c.End, c.AtEnd = r.position(r.off), atEnd
	r.cfg.Stats.Lines.Add(int64(c.Len()))
	r.cfg.Stats.ReadBytes.Add(int64(c.Size()))
	return c
}

// fill reads fsynced lines into c; full says c is to be handed out now
// (MaxEvents, MaxBytes, or a cut position reached).
func (r *Reader) fill(c *source.Chunk) (full bool, err error) {
	for {
		if c.Len() >= r.cfg.MaxEvents || c.Size() >= r.cfg.MaxBytes {
			return true, nil
		}
		synced := r.s.Synced()
		if r.off >= synced {
			return false, nil
		}
		segEnd, err := r.openAt()
		if err != nil {
			return false, err
		}
		if segEnd < 0 || segEnd > synced {
			segEnd = synced
		}
		if r.off >= segEnd {
			return false, nil
		}
		avail := segEnd - r.off
		room := int64(r.cfg.MaxBytes - c.Size())
		want := min(avail, max(room, 0))
		n, cut, err := r.readLines(c, want, avail)
		if err != nil {
			return false, err
		}
		if cut {
			return true, nil
		}
		if n == 0 {
			return c.Len() > 0, nil // the next line does not fit
		}
	}
}

// readLines reads up to want bytes at r.off into c, keeps the complete
// lines that fit its limits, and moves r.off past them. With an empty c
// and no complete line in the window, it reads on (up to avail, which ends
// on a line boundary) until it has one.
func (r *Reader) readLines(c *source.Chunk, want, avail int64) (n int, cut bool, err error) {
	start := len(c.Buf)
	for {
		c.Buf = growTo(c.Buf, start+int(want))
		if _, err := r.f.ReadAt(c.Buf[start:start+int(want)], r.off-r.fBase); err != nil {
			c.Buf = c.Buf[:start]
			return 0, false, fmt.Errorf("webhook: reading spool segment %s: %w", r.f.Name(), err)
		}
		if bytes.IndexByte(c.Buf[start:start+int(want)], '\n') >= 0 || c.Len() > 0 || want >= avail {
			break
		}
		want = min(avail, 2*want)
	}
	win := c.Buf[start : start+int(want)]
	p := r.cut.Load()
	kept := 0
	for kept < len(win) && c.Len() < r.cfg.MaxEvents {
		i := bytes.IndexByte(win[kept:], '\n')
		if i < 0 {
			break
		}
		kept += i + 1
		c.Ends = append(c.Ends, start+kept)
		n++
		if p != nil && p.Stream == r.s.id && p.Offset == r.off+int64(kept) {
			cut = true
			break
		}
	}
	c.Buf = c.Buf[:start+kept]
	r.off += int64(kept)
	return n, cut, nil
}

func growTo(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	nb := make([]byte, n, max(n, 2*cap(b)))
	copy(nb, b)
	return nb
}

// openAt makes r.f the segment holding off and returns where it ends (-1:
// the last one). Bytes missing from the spool (segments deleted, or one
// cut short, by hand) are skipped and counted as lost.
func (r *Reader) openAt() (int64, error) {
	for {
		g, end, ok := r.s.segmentAt(r.off)
		if !ok {
			first := r.s.first.Load()
			r.lost(r.off, first, "spool segments were deleted before this reader read them")
			r.off = first
			continue
		}
		if r.f == nil || r.fBase != g.base {
			r.closeFile()
			f, err := os.Open(g.path)
			if errors.Is(err, os.ErrNotExist) {
				continue // trimmed meanwhile: look again
			}
			if err != nil {
				return 0, fmt.Errorf("webhook: %w", err)
			}
			info, err := f.Stat()
			if err != nil {
				f.Close()
				return 0, fmt.Errorf("webhook: %w", err)
			}
			r.f, r.fBase, r.fSize = f, g.base, info.Size()
		}
		if end >= 0 && r.off >= r.fBase+r.fSize {
			// A closed segment read to its end (as it was when opened: it
			// may have been the last one then).
			if info, err := r.f.Stat(); err == nil {
				r.fSize = info.Size()
			}
			if r.off < r.fBase+r.fSize {
				return end, nil
			}
			r.lost(r.off, end, "a spool segment is shorter than the next one's name says")
			r.off = end
			continue
		}
		return end, nil
	}
}

func (r *Reader) lost(from, to int64, why string) {
	if to <= from {
		return
	}
	r.cfg.Stats.LostBytes.Add(to - from)
	r.cfg.Stats.LostFiles.Add(1)
	r.cfg.Log.Warn("data lost: "+why, "spool", r.s.dir, "lost_bytes", to-from)
}

func (r *Reader) closeFile() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}
