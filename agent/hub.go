package agent

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/audittail/audittail/source"
)

// hub reads one input once for every output. It parses each chunk once
// and hands the same read-only chunk to every attached stream through the
// stream's bounded queue.
//
// A stream whose queue is full while another attached stream's is not is
// detached: it finishes what it was given, goes on with a reader of its
// own from there, and joins again once it has caught up (see join). When
// every attached stream is full (the only output is down, or all are), the
// hub waits instead: detaching would only make each read again. Its reader
// then waits on its pool, keeping its files open and its list of backups
// current, so a backup deleted meanwhile is counted as lost.
type hub struct {
	in     *input
	reader source.Reader

	mu      sync.Mutex
	subs    []*stream      // attached: each gets every chunk
	joins   []*pendingJoin // streams waiting for the hub to reach their position
	last    source.Position
	seq     uint64        // chunks handed out (or being handed out)
	handing bool          // chunk seq is being handed out: h.last is its start
	done    bool          // the hub ended: no more chunks
	space   chan struct{} // a stream took a chunk, or one attached
}

// detachGrace is how long a full stream may keep the others waiting
// before it is detached: long enough that a sink's jitter does not make it
// read everything again, short enough to be no outage for the others.
const detachGrace = 250 * time.Millisecond

type pendingJoin struct {
	s      *stream
	at     source.Position
	result chan bool // true: attached from the next chunk on
}

func newHub(in *input, r source.Reader, start source.Position) *hub {
	return &hub{in: in, reader: r, last: start, space: make(chan struct{}, 1)}
}

// attach adds s before the hub starts.
func (h *hub) attach(s *stream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attachLocked(s)
}

func (h *hub) attachLocked(s *stream) {
	s.queue = make(chan *source.Chunk, s.a.cfg.MaxInflight)
	h.subs = append(h.subs, s)
	h.wake()
}

// wake tells a hub waiting for queue space to look again.
func (h *hub) wake() {
	select {
	case h.space <- struct{}{}:
	default:
	}
}

// run reads and hands out chunks until the reader ends (io.EOF, or
// stopped when ctx is done: what it had read is still handed out), then
// closes every attached stream's queue. It returns the reader's error.
func (h *hub) run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { stopReader(h.reader) })
	defer stop()
	parsed := make(chan *parsing, runtime.GOMAXPROCS(0))
	var readErr error
	go func() {
		defer close(parsed)
		readErr = h.read(parsed)
	}()
	for p := range parsed {
		<-p.done
		h.handOut(ctx, p.c)
	}
	h.mu.Lock()
	h.done = true
	for _, s := range h.subs {
		close(s.queue)
	}
	h.subs = nil
	for _, j := range h.joins {
		j.result <- false
	}
	h.joins = nil
	h.mu.Unlock()
	h.reader.Close()
	return readErr
}

type parsing struct {
	c    *source.Chunk
	done chan struct{}
}

// read takes chunks from the reader and parses them in parallel, one
// goroutine per CPU, handing them on in order.
func (h *hub) read(out chan<- *parsing) error {
	workers := make(chan struct{}, runtime.GOMAXPROCS(0))
	for {
		c, err := h.reader.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := &parsing{c: c, done: make(chan struct{})}
		workers <- struct{}{}
		go func() {
			defer func() { <-workers }()
			c.Parse()
			h.in.logParseErrors(c)
			h.in.annotate(c)
			close(p.done)
		}()
		out <- p
	}
}

// handOut gives c to every attached stream. A stream whose queue is full
// is waited for while every other stream is busy; once another one sits
// idle with nothing queued (or waits to join) and the full one has not made
// room for detachGrace, the full one is detached, so that it holds back
// only itself, and only that long. When all are full (the only output is down, or all are),
// the hub waits. After ctx is done it does not wait: streams that are full
// then are detached, and as reading has stopped they end.
func (h *hub) handOut(ctx context.Context, c *source.Chunk) {
	h.mu.Lock()
	defer h.mu.Unlock()
	defer c.Release() // the hub's own hold
	h.seq++
	h.handing = true
	defer func() { h.handing = false }()
	pending := append([]*stream(nil), h.subs...)
	var waitStart time.Time
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		full := pending[:0]
		for _, s := range pending {
			c.Hold(1)
			select {
			case s.queue <- c:
				s.gotSeq = h.seq
			default:
				c.Release()
				full = append(full, s)
			}
		}
		pending = full
		if len(pending) == 0 || ctx.Err() != nil {
			break
		}
		if waitStart.IsZero() {
			waitStart = time.Now()
			timer = time.NewTimer(detachGrace)
		}
		if h.starving(pending) && time.Since(waitStart) >= detachGrace {
			break
		}
		// Wait for a stream to take a chunk (or one to attach), without
		// the lock, then look again.
		h.mu.Unlock()
		select {
		case <-h.space:
		case <-timer.C:
		case <-ctx.Done():
		}
		h.mu.Lock()
		for _, s := range h.subs {
			if s.gotSeq != h.seq && !contains(pending, s) {
				pending = append(pending, s) // joined at h.last while we waited
			}
		}
	}
	for _, s := range pending {
		h.detachLocked(s)
	}
	h.last = c.End
	// Streams waiting for this point join now; those it passed try later.
	joins := h.joins[:0]
	for _, j := range h.joins {
		switch {
		case c.End.Same(j.at):
			j.s.gotSeq = h.seq // it has c already
			h.attachLocked(j.s)
			j.result <- true
		case c.End.Stream == j.at.Stream && c.End.Offset < j.at.Offset:
			joins = append(joins, j) // not there yet
		default:
			j.result <- false
		}
	}
	clear(h.joins[len(joins):])
	h.joins = joins
	if a, ok := h.reader.(source.Aligner); ok && len(h.joins) == 0 {
		a.CutAt(source.Position{})
	}
}

// starving reports whether a stream waits for the hub: one attached,
// other than the full ones, that sits idle with nothing queued, or one
// waiting to join. Waiting longer for the full ones would hold it back.
func (h *hub) starving(full []*stream) bool {
	if len(h.joins) > 0 {
		return true
	}
	for _, s := range h.subs {
		if !contains(full, s) && s.idle.Load() && len(s.queue) == 0 {
			return true
		}
	}
	return false
}

// detachLocked removes s from the attached streams and closes its queue:
// it reads on its own from the end of the last chunk it got.
func (h *hub) detachLocked(s *stream) {
	for i, x := range h.subs {
		if x == s {
			h.subs = append(h.subs[:i], h.subs[i+1:]...)
			break
		}
	}
	close(s.queue)
	s.detached.Add(1)
}

func contains(ss []*stream, s *stream) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// join asks the hub to take s (which has taken everything up to at: the
// last of it may still be in flight, its sender delivers in order)
// back into the shared stream. It returns a channel that yields true once
// s is attached (its queue then gets every chunk after at) or false if the
// hub could not meet s at at (s goes on alone and asks again), and, when
// s is behind the hub on the same stream, the hub's position: s should
// make its reader cut a chunk exactly there (source.Aligner) so that the
// two meet. Both are zero when the hub is not at a comparable point now.
func (h *hub) join(s *stream, at source.Position) (res <-chan bool, target source.Position) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done || at.Stream == "" {
		return nil, target
	}
	ch := make(chan bool, 1)
	switch {
	case h.last.Same(at):
		// It needs every chunk after at: if one is being handed out now
		// (handOut waits without the lock), that one too.
		s.gotSeq = h.seq
		if h.handing {
			s.gotSeq = h.seq - 1
		}
		h.attachLocked(s)
		ch <- true
		return ch, target
	case h.last.Stream == at.Stream && h.last.Offset < at.Offset:
		// The hub is behind: it will cut a chunk exactly at at.
		a, ok := h.reader.(source.Aligner)
		if !ok {
			return nil, target
		}
		a.CutAt(at)
		h.joins = append(h.joins, &pendingJoin{s: s, at: at, result: ch})
		return ch, target
	case h.last.Stream == at.Stream:
		return nil, h.last
	}
	return nil, target
}

// where returns the end of the last chunk the hub handed out.
func (h *hub) where() source.Position {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// A stoppable reader can be told to stop reading and hand out what it
// has read (file.Reader); others are closed.
type stoppable interface{ Stop() }

func stopReader(r source.Reader) {
	if s, ok := r.(stoppable); ok {
		s.Stop()
		return
	}
	r.Close()
}
