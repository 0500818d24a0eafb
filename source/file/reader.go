// Package file is the source that follows a kube-apiserver audit log on
// disk: the live file and its lumberjack backups (plain and .gz), through
// rename rotation, copytruncate, restarts and downtime. Follow reads the
// log for as long as it runs; Backfill reads a fixed list of files once.
package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/audittail/audittail/source"
)

// Config configures a Reader.
type Config struct {
	// Path is the live file; its backups are found beside it.
	Path string
	// StartAt applies when there is no position: "end" skips what the
	// live file holds, "beginning" reads it from offset 0.
	StartAt string
	// MaxLineBytes skips (and counts) longer lines.
	MaxLineBytes int
	// PollInterval is how often files are stat'ed besides inotify events.
	PollInterval time.Duration
	// A chunk closes on MaxEvents lines, MaxBytes bytes, or MaxWait after
	// its first line, whichever comes first.
	MaxEvents int
	MaxBytes  int
	MaxWait   time.Duration
	// Pool is the number of chunks the reader may have out at once; it
	// waits for a release beyond that.
	Pool int
	// StopAtEOF ends a Follow reader (io.EOF) once the live file is read
	// to its end (benchmarks, one-shot reads).
	StopAtEOF bool
	// CutAt, if set, is a position where a chunk must end (see CutAt).
	CutAt source.Position
	// Log receives the reader's messages; Stats its counters (shared by
	// every reader of the input). Now is the clock (tests).
	Log   *slog.Logger
	Stats *Stats
	Now   func() time.Time
}

func (c *Config) defaults() {
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = 8 << 20
	}
	if c.PollInterval == 0 {
		c.PollInterval = 250 * time.Millisecond
	}
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
		c.Stats = &Stats{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Stats counts what the readers of one input did (see source.Stats).
type Stats = source.Stats

// Reader reads one audit log. It implements source.Reader and
// source.Aligner.
type Reader struct {
	f      *follower
	pool   *source.Pool
	ready  chan *source.Chunk
	start  source.Position
	cancel context.CancelFunc
	done   chan struct{}
	err    error // why the reading goroutine ended; valid after done
	once   sync.Once
}

var (
	_ source.Reader  = (*Reader)(nil)
	_ source.Aligner = (*Reader)(nil)
)

// Follow opens the log at pos (a Position.State this source encoded;
// nil on a first start, which begins at cfg.StartAt) and reads it until
// Close. An error finding the start is returned here, with nothing left
// open.
func Follow(cfg Config, pos json.RawMessage) (*Reader, error) {
	cfg.defaults()
	c, err := decodeCursor(pos)
	if err != nil {
		return nil, err
	}
	r := newReader(cfg)
	f := r.f
	if cfg.StopAtEOF {
		f.stopAt = func(*openFile) bool { return true }
	}
	f.timer = time.NewTimer(time.Hour)
	f.timer.Stop()
	f.watch()
	if err := f.resolve(c, cfg.StartAt); err != nil {
		f.closeAll()
		return nil, fmt.Errorf("input %s: %w", cfg.Path, err)
	}
	return r.run(f.loop)
}

// Backfill reads files (one log's, in rotation order, as BackfillGroups
// lists them) once, from pos (nil: the first file), then returns io.EOF.
// A plain file is read only up to its size when it was listed.
func Backfill(cfg Config, files []Ref, pos json.RawMessage) (*Reader, error) {
	cfg.defaults()
	c, err := decodeCursor(pos)
	if err != nil {
		return nil, err
	}
	r := newReader(cfg)
	f := r.f
	f.fixed = files
	if err := f.resolveFixed(c); err != nil && !errors.Is(err, errStop) {
		f.closeAll()
		return nil, fmt.Errorf("input %s: %w", cfg.Path, err)
	}
	return r.run(f.backfillLoop)
}

func newReader(cfg Config) *Reader {
	pool := source.NewPool(cfg.Pool)
	r := &Reader{pool: pool, ready: make(chan *source.Chunk, cfg.Pool), done: make(chan struct{})}
	r.f = newFollower(cfg, &chunker{pool: pool, ready: r.ready, cfg: cfg})
	r.f.chunks.f = r.f
	r.CutAt(cfg.CutAt)
	return r
}

func (r *Reader) run(loop func(context.Context) error) (*Reader, error) {
	f := r.f
	st, err := f.position(f.initialCursor())
	if err != nil {
		f.closeAll()
		return nil, err
	}
	r.start = st
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		err := loop(ctx)
		f.chunks.flush(false)
		f.closeAll()
		if errors.Is(err, errStop) || errors.Is(err, context.Canceled) {
			err = nil
		}
		r.err = err
	}()
	return r, nil
}

// Start returns the position before the first chunk: where the reader
// resolved its start to (a first start records it, so that a crash before
// the first delivery does not make the next start a first start again).
func (r *Reader) Start() source.Position { return r.start }

// Pool returns the reader's chunk pool.
func (r *Reader) Pool() *source.Pool { return r.pool }

// Next returns the next chunk (see source.Reader).
func (r *Reader) Next(ctx context.Context) (*source.Chunk, error) {
	select {
	case c := <-r.ready:
		return c, nil
	default:
	}
	select {
	case c := <-r.ready:
		return c, nil
	case <-r.done:
		select {
		case c := <-r.ready:
			return c, nil
		default:
		}
		if r.err != nil {
			return nil, r.err
		}
		return nil, io.EOF
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// CutAt makes the reader end a chunk exactly at p if it reads the line
// that ends there.
func (r *Reader) CutAt(p source.Position) {
	if p.Stream == "" {
		r.f.chunks.cut.Store(nil)
		return
	}
	r.f.chunks.cut.Store(&p)
}

// Stop stops reading: Next then returns what was read (the chunk being
// filled included) and io.EOF.
func (r *Reader) Stop() {
	r.cancel()
	<-r.done
}

// Stopped is closed when the reader has stopped (Stop, its end, or an
// error).
func (r *Reader) Stopped() <-chan struct{} { return r.done }

// Close stops reading and closes the files. Chunks not yet taken with
// Next are released.
func (r *Reader) Close() error {
	r.once.Do(func() {
		r.cancel()
		<-r.done
		for {
			select {
			case c := <-r.ready:
				c.Release()
				continue
			default:
			}
			break
		}
	})
	return nil
}

// chunker collects the follower's lines into chunks from the pool.
type chunker struct {
	f        *follower
	pool     *source.Pool
	ready    chan *source.Chunk
	cfg      Config
	cut      atomic.Pointer[source.Position]
	cur      *source.Chunk
	deadline time.Time
	src      *openFile // the file of the last line added
	end      int64     // offset just past the last line added
}

// add copies line into the open chunk, opening one (and waiting for a
// free one) if needed, and hands the chunk out when it is full.
func (b *chunker) add(ctx context.Context, line []byte, s *openFile, end int64) error {
	if b.cur != nil && b.cur.Size()+len(line)+1 > b.cfg.MaxBytes {
		b.flush(false)
	}
	if b.cur == nil {
		if err := b.acquire(ctx); err != nil {
			return err
		}
		b.deadline = time.Now().Add(b.cfg.MaxWait)
	}
	b.cur.Append(line)
	b.src, b.end = s, end
	if b.cur.Len() >= b.cfg.MaxEvents || b.cur.Size() >= b.cfg.MaxBytes {
		b.flush(false)
	} else if p := b.cut.Load(); p != nil && s.fp.ready() && p.Offset == end && p.Stream == s.fp.Sum {
		b.flush(false)
	}
	return nil
}

// acquire takes a free chunk, waiting while all are out (an output is slow
// or down). While it waits, the follower keeps its list of queued backups
// current, so that lumberjack deleting one is noticed and counted.
func (b *chunker) acquire(ctx context.Context) error {
	c, err := b.pool.Get(ctx, b.cfg.PollInterval, func() {
		if err := b.f.refresh(); err != nil {
			b.f.log.Warn("cannot list the input directory", "error", err)
		}
	})
	b.cur = c
	return err
}

// flush hands the open chunk out. It never blocks: ready has room for
// every chunk of the pool.
func (b *chunker) flush(atEnd bool) {
	if b.cur == nil {
		return
	}
	if ts := stageTS(b.cur.Line(b.cur.Len() - 1)); ts != "" {
		b.f.lastTS = ts
	}
	pos, err := b.f.position(b.f.cursorAt(b.src, b.end))
	if err != nil {
		panic(err) // a Cursor always encodes
	}
	b.cur.End, b.cur.AtEnd = pos, atEnd
	b.f.stats.Lines.Add(int64(b.cur.Len()))
	b.ready <- b.cur
	b.cur, b.src = nil, nil
}

// flushDue hands the open chunk out if it has waited max_wait; atEnd says
// the reader has nothing more to read now.
func (b *chunker) flushDue(atEnd bool) {
	if b.cur != nil && !time.Now().Before(b.deadline) {
		b.flush(atEnd)
	}
}

// due returns when the open chunk must be handed out, if there is one.
func (b *chunker) due() (time.Time, bool) {
	return b.deadline, b.cur != nil
}
