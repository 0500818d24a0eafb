// Package source defines how inputs feed the agent: a Reader hands out
// Chunks of complete lines in order, each ending at a Position that the
// agent checkpoints once an output has acknowledged the chunk. Sources know
// nothing of batches or outputs; each kind of input (source/file, the
// webhook spool) encodes its own Position.
package source

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/audittail/audittail/parser"
)

// Position is a point in a source's stream, just past a line.
//
// State is the source's own encoding (what the checkpoint stores, opaque
// to everyone else). Stream and Offset let the agent compare two positions
// taken by two Readers of one input without decoding State: positions with
// the same Stream (a file's fingerprint, a spool segment) are ordered by
// Offset; positions on different Streams are not comparable.
type Position struct {
	Stream string
	Offset int64
	State  json.RawMessage
}

// Same reports whether p and q are the same point of the stream.
func (p Position) Same(q Position) bool {
	return p.Stream != "" && p.Stream == q.Stream && p.Offset == q.Offset
}

// Chunk is a run of complete lines from one input, in order, and the
// Position just past the last one. Lines are stored back to back, each
// followed by '\n'.
//
// A Chunk is read-only once Next returned it: the agent hands the same
// Chunk to every output. It returns to its Reader's pool when the last
// holder calls Release.
type Chunk struct {
	Buf  []byte
	Ends []int // Ends[i] is the offset in Buf just past line i's '\n'
	End  Position
	// AtEnd says the reader had read everything there was when it cut
	// this chunk (it was waiting for the writer).
	AtEnd bool

	// Filled by Parse.
	Events []parser.Event
	OK     []bool      // OK[i]: line i is a valid audit event
	Errs   []LineError // the lines that are not, in order

	alt  []byte // Rewrite's other buffer
	refs atomic.Int32
	pool *Pool
}

// LineError says why line Line of a chunk is not a valid audit event.
type LineError struct {
	Line int
	Err  error
}

// Len returns the number of lines.
func (c *Chunk) Len() int { return len(c.Ends) }

// Size returns the bytes of the lines, newlines included.
func (c *Chunk) Size() int { return len(c.Buf) }

// Line returns line i without its newline; it aliases Buf.
func (c *Chunk) Line(i int) []byte {
	start := 0
	if i > 0 {
		start = c.Ends[i-1]
	}
	return c.Buf[start : c.Ends[i]-1]
}

// Append copies line (without '\n') into the chunk.
func (c *Chunk) Append(line []byte) {
	c.Buf = append(c.Buf, line...)
	c.Buf = append(c.Buf, '\n')
	c.Ends = append(c.Ends, len(c.Buf))
}

// Parse scans every line once, filling Events, OK and Errs. A line that
// is valid JSON but not an audit event counts as an error too.
func (c *Chunk) Parse() {
	n := len(c.Ends)
	c.Events = grow(c.Events, n)
	c.OK = grow(c.OK, n)
	c.Errs = c.Errs[:0]
	for i := range n {
		err := parser.Scan(c.Line(i), &c.Events[i])
		if err == nil {
			err = c.Events[i].Check()
		}
		c.OK[i] = err == nil
		if err != nil {
			c.Errs = append(c.Errs, LineError{i, err})
		}
	}
}

// Rewrite replaces every line with what fn appends to dst for it (line i,
// without its newline), then parses the chunk again. It is for a reader's
// owner before it hands the chunk out (static annotations of an input).
func (c *Chunk) Rewrite(fn func(dst []byte, i int, line []byte) []byte) {
	buf := c.alt[:0]
	start := 0
	for i, end := range c.Ends {
		buf = fn(buf, i, c.Buf[start:end-1])
		buf = append(buf, '\n')
		c.Ends[i], start = len(buf), end
	}
	c.Buf, c.alt = buf, c.Buf
	c.Parse()
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// Hold adds n holders; each calls Release once.
func (c *Chunk) Hold(n int) { c.refs.Add(int32(n)) }

// Release drops one holder; the last one returns the chunk to its pool.
func (c *Chunk) Release() {
	if n := c.refs.Add(-1); n == 0 && c.pool != nil {
		c.pool.put(c)
	} else if n < 0 {
		panic("source: Chunk released more often than held")
	}
}

func (c *Chunk) reset() {
	c.Buf, c.Ends, c.Errs = c.Buf[:0], c.Ends[:0], c.Errs[:0]
	c.OK = c.OK[:0]
	c.End, c.AtEnd = Position{}, false
}

// Pool bounds the chunks of a Reader: Get waits while all are out. It is
// what keeps the agent's memory bounded whatever the outputs do.
type Pool struct {
	free chan *Chunk
	size int

	mu     sync.Mutex
	out    int // chunks handed out and not released
	maxOut int
}

// NewPool makes a pool of size chunks.
func NewPool(size int) *Pool {
	p := &Pool{free: make(chan *Chunk, size), size: size}
	for range size {
		p.free <- &Chunk{pool: p}
	}
	return p
}

// Get takes a free chunk, held once, waiting until one is released or ctx
// is done. While it waits, onTick (if not nil) runs every period (a file
// reader keeps its list of backups current meanwhile).
func (p *Pool) Get(ctx context.Context, period time.Duration, onTick func()) (*Chunk, error) {
	if c := p.TryGet(); c != nil {
		return c, nil
	}
	var tick <-chan time.Time
	if onTick != nil {
		t := time.NewTicker(period)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case c := <-p.free:
			p.take(c)
			return c, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick:
			onTick()
		}
	}
}

func (p *Pool) take(c *Chunk) {
	c.refs.Store(1)
	p.mu.Lock()
	p.out++
	p.maxOut = max(p.maxOut, p.out)
	p.mu.Unlock()
}

// TryGet takes a free chunk if one is free now.
func (p *Pool) TryGet() *Chunk {
	select {
	case c := <-p.free:
		p.take(c)
		return c
	default:
		return nil
	}
}

func (p *Pool) put(c *Chunk) {
	c.reset()
	p.mu.Lock()
	p.out--
	p.mu.Unlock()
	p.free <- c
}

// Size returns the pool's capacity.
func (p *Pool) Size() int { return p.size }

// InUse returns the chunks out now and the most ever out at once.
func (p *Pool) InUse() (now, peak int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out, p.maxOut
}

// Reader reads one input in order.
//
// Next returns the next chunk, waiting for data; io.EOF when a bounded
// reader (backfill) has read everything, ctx.Err() when ctx is done, or an
// error that ends the input. One goroutine calls Next at a time. Close
// stops the reader and releases its files; chunks already returned stay
// valid until released.
type Reader interface {
	Next(ctx context.Context) (*Chunk, error)
	Close() error
}

// Aligner is implemented by readers that can end a chunk exactly at a
// given position when they read past it, so that a second reader of the
// same input can hand over to this one without a gap or an overlap.
type Aligner interface {
	CutAt(p Position)
}

// Stats counts what the readers of one input did. The counters are read
// concurrently by the summary and the metrics collector. A source fills
// those that mean something for it (a spool has no rotations).
type Stats struct {
	ReadBytes     atomic.Int64 // bytes consumed from files or the spool (decompressed)
	Lines         atomic.Int64 // complete lines handed out in chunks
	OversizeLines atomic.Int64 // lines over max_line_bytes, skipped whole
	TornLines     atomic.Int64 // incomplete last lines of rotated files, skipped
	Rotations     atomic.Int64 // moves from one file to the next
	Truncations   atomic.Int64 // copytruncate detected: restarted at offset 0
	LostBytes     atomic.Int64 // bytes deleted before they were read (uncompressed; a lower bound)
	LostFiles     atomic.Int64 // files deleted (wholly or partly) before they were read
	// LostWindowNanos sums the stageTimestamp spans of the gaps: from the
	// last event read before each to the first read after it.
	LostWindowNanos atomic.Int64
	Open            atomic.Bool // the input is open (a file, or the webhook listener)
}
