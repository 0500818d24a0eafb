package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/source"
)

// output is one configured sink with what its streams share: the send
// lock (Send is called by one goroutine at a time), the dead-letter file
// and the counters.
type output struct {
	name         string
	out          outputs.Output
	stats        *OutputStats
	dead         *deadLetter
	onParseError string
	policy       outputPolicy // policy_file and redact
	policyStats  policyStats
	log          *slog.Logger
	sendMu       sync.Mutex
}

// stream carries one input to one output. While attached to the input's
// hub it takes the shared chunks from its queue; detached (its queue was
// full: the output is slow or down), it reads on its own from the end of
// the last chunk it took, and asks the hub to take it back after each
// chunk. It commits a position only past chunks the output acknowledged.
type stream struct {
	a   *Agent
	out *output
	in  *input

	queue    chan *source.Chunk // from the hub; nil while on its own
	detached atomic.Int32       // times the hub detached it
	seen     int32              // detachments handled
	pos      source.Position    // End of the last chunk taken
	idle     atomic.Bool        // waiting on an empty queue
	gotSeq   uint64             // the hub's seq of the last chunk queued to it (hub.mu)
	lines    atomic.Int64       // lines taken
	ownReads atomic.Int64       // chunks read on its own (catching up)

	// Two batches: while the sender delivers one, handle fills (and the
	// output prepares) the other. batch is the one being filled.
	bufs  [2]outputs.Batch
	next  int
	batch *outputs.Batch
	keep  []int
	jobs  chan delivery // to the sender; unbuffered

	// rewrite's buffers (policy and redaction)
	entries []struct{ i, start, end int }
	rwBuf   []byte
	scratch []byte
}

// delivery is a batch handed to the sender, and the chunk it views.
type delivery struct {
	c *source.Chunk
	b *outputs.Batch
}

// run delivers until the input ends or ctx (reading) is done; sends use
// sendCtx, which outlives ctx by the shutdown budget. A sender goroutine
// delivers each batch and commits it while run takes and prepares the
// next: one batch is in flight at a time, so a crash still re-sends at most
// one, and the checkpoint moves in order.
func (s *stream) run(ctx, sendCtx context.Context) error {
	s.jobs = make(chan delivery)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for d := range s.jobs {
			s.commit(sendCtx, d)
		}
	}()
	defer func() {
		close(s.jobs)
		<-sent
	}()
	return s.take(ctx, sendCtx)
}

// take takes chunks from the hub, or reads on its own, until the input
// ends or ctx is done.
func (s *stream) take(ctx, sendCtx context.Context) error {
	for {
		if s.queue != nil {
			if len(s.queue) == 0 {
				s.idle.Store(true)
				s.in.hub.wake()
			}
			c, ok := <-s.queue
			s.idle.Store(false)
			if ok {
				s.in.hub.wake()
				s.handle(sendCtx, c)
				continue
			}
			s.queue = nil
			if n := s.detached.Load(); n == s.seen || ctx.Err() != nil {
				return nil // the hub ended, and gave us everything
			}
			s.seen++
			s.a.log.Info("output fell behind the input; reading on its own until it catches up",
				"output", s.out.name, "input", s.in.key)
		}
		if err := s.catchUp(ctx, sendCtx); err != nil || s.queue == nil {
			return err
		}
	}
}

// catchUp reads the input with a reader of its own from s.pos until the
// hub takes s back (s.queue set), the input ends, or ctx is done.
func (s *stream) catchUp(ctx, sendCtx context.Context) error {
	// Cut a chunk where the hub is, so that s can hand over there.
	r, err := s.in.open(s.pos.State, s.a.hubPool(), s.in.hub.where())
	if err != nil {
		return err
	}
	s.in.track(r.Pool())
	if s.pos.State == nil {
		// A first start of this output: record where it began.
		s.a.store.Set(s.out.name, s.in.key, r.Start().State)
	}
	stop := context.AfterFunc(ctx, func() { stopReader(r) })
	defer func() {
		stop()
		r.Close()
	}()
	for {
		c, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		s.ownReads.Add(1)
		c.Parse()
		s.in.logParseErrors(c)
		s.in.annotate(c)
		s.handle(sendCtx, c)
		if ctx.Err() != nil {
			continue // drain what the reader has, then EOF
		}
		res, target := s.in.hub.join(s, s.pos)
		if target.Stream != "" {
			r.CutAt(target)
		}
		if res != nil {
			select {
			case ok := <-res:
				if ok {
					s.a.log.Info("output caught up; back on the shared input", "output", s.out.name, "input", s.in.key)
					return nil
				}
			case <-ctx.Done():
			}
		}
	}
}

// handle makes c the next batch, has the output prepare it (an
// outputs.Preparer encodes it while the batch before is in flight), and
// hands it to the sender, waiting until the sender is done with the
// batch before.
func (s *stream) handle(ctx context.Context, c *source.Chunk) {
	s.lines.Add(int64(c.Len()))
	if ctx.Err() != nil {
		c.Release()
		return
	}
	s.batch = &s.bufs[s.next]
	s.next ^= 1
	s.batch.View(s.in.key, c.Buf, c.Ends, c.Events, c.OK)
	s.filter(c)
	if p, ok := s.out.out.(outputs.Preparer); ok && s.batch.Len() > 0 {
		p.Prepare(s.batch)
	}
	s.pos = c.End
	s.jobs <- delivery{c, s.batch}
}

// commit delivers d's batch, commits the end of its chunk if the output
// took it, and releases the chunk.
func (s *stream) commit(ctx context.Context, d delivery) {
	defer d.c.Release()
	if ctx.Err() != nil {
		return
	}
	if s.deliver(ctx, d.b) {
		// Written before the next batch is sent: a crash of the agent
		// re-sends at most one batch. fsync (for a crash of the machine)
		// follows every checkpoint_interval.
		s.a.store.Set(s.out.name, s.in.key, d.c.End.State)
		s.a.flushCheckpoint()
	}
}

// filter counts the chunk's invalid lines for this output, drops them if
// it says on_parse_error: drop, and applies backfill's time window.
func (s *stream) filter(c *source.Chunk) {
	st := s.out.stats
	s.keep = s.keep[:0]
	bad := 0
	for _, e := range c.Errs {
		st.parseError(parseErrorReason(e.Err))
	}
	drop := s.out.onParseError == "drop"
	if drop {
		bad = len(c.Errs)
		st.ParseDropped.Add(int64(bad))
	}
	window := !s.a.since.IsZero() || !s.a.until.IsZero()
	if !window && bad == 0 && !s.out.policy.active() {
		return
	}
	filtered := int64(0)
	for i := range c.Len() {
		if !c.OK[i] && drop {
			continue
		}
		if window && c.OK[i] && !s.a.inWindow(&c.Events[i]) {
			filtered++
			continue
		}
		s.keep = append(s.keep, i)
	}
	st.Filtered.Add(filtered)
	if s.out.policy.active() {
		s.rewrite(c, s.keep)
		return
	}
	if len(s.keep) < c.Len() {
		s.batch.Keep(s.keep)
	}
}

// deliver sends the batch until the output accepts it (lines it rejects
// for good go to the dead-letter file) or ctx is done. It reports whether
// the batch is settled, so that the checkpoint may move past it.
func (s *stream) deliver(ctx context.Context, b *outputs.Batch) bool {
	o := s.out
	backoff := backoffMin
	events := b.Len()
	for attempt := 1; ; attempt++ {
		if b.Len() == 0 {
			return true
		}
		start := time.Now()
		o.sendMu.Lock()
		err := o.out.Send(ctx, b)
		o.sendMu.Unlock()
		o.stats.observeSend(time.Since(start))
		if err == nil {
			o.stats.Events.Add(int64(b.Len()))
			o.stats.Bytes.Add(int64(b.Size()))
			o.stats.Batches.Add(1)
			o.stats.noteSuccess(b)
			if attempt > 1 {
				o.log.Info("output recovered", "attempts", attempt, "events", events)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		var rejected *outputs.RejectedError
		var partial *outputs.PartialError
		var after *outputs.RetryAfterError
		if errors.As(err, &rejected) {
			// The output took the rest: a success with casualties.
			if !s.deadLetter(ctx, b, rejected.Lines, err) {
				return false
			}
			accepted := b.Len() - len(rejected.Lines)
			o.stats.Events.Add(int64(accepted))
			o.stats.Batches.Add(1)
			if accepted > 0 {
				o.stats.noteSuccess(b)
			}
			return true
		}
		o.stats.Failed.Add(1)
		o.stats.noteFailure()
		switch {
		case outputs.IsPermanent(err):
			all := make([]int, b.Len())
			for i := range all {
				all[i] = i
			}
			return s.deadLetter(ctx, b, all, err)
		case errors.As(err, &partial):
			o.stats.Events.Add(int64(b.Len() - len(partial.Lines)))
			b.Keep(partial.Lines)
		}
		if s.a.giveUpAfter > 0 && o.stats.FailingFor() >= s.a.giveUpAfter {
			s.a.abort(fmt.Errorf("output %s failing for %s: %w (run again to resume)", o.name, s.a.giveUpAfter, err))
			return false
		}
		if attempt == 1 || attempt%10 == 0 {
			o.log.Warn("send failed; retrying with backoff", "attempt", attempt, "events", b.Len(), "error", err)
		}
		o.stats.Retries.Add(1)
		// Jitter between half and the whole backoff; never sooner than the
		// sink asked for.
		d := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		if errors.As(err, &after) && after.After > d {
			d = min(after.After, 5*time.Minute)
		}
		if !sleep(ctx, d) {
			return false
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// Retry timing for failed sends.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 30 * time.Second
)

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// deadLetter writes the given lines of the batch to the dead-letter file.
// If that fails too (disk full), the batch stays unacknowledged and is
// tried again.
func (s *stream) deadLetter(ctx context.Context, b *outputs.Batch, lines []int, cause error) bool {
	o := s.out
	for attempt := 1; ; attempt++ {
		err := o.dead.write(o.name, b, lines, cause)
		if err == nil {
			o.stats.DeadLettered.Add(int64(len(lines)))
			o.log.Error("output rejected events permanently; they were written to the dead-letter file",
				"events", len(lines), "dead_letter", o.dead.path, "error", cause)
			return true
		}
		o.log.Error("cannot write the dead-letter file; the batch stays unacknowledged", "dead_letter", o.dead.path, "error", err)
		if !sleep(ctx, min(backoffMax, backoffMin<<min(attempt, 8))) {
			return false
		}
	}
}
