package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"

	"github.com/audittail/audittail/outputs"
)

// pendingBatch is a batch on its way to an output, with the cursor to
// commit once the output acknowledges it.
type pendingBatch struct {
	outputs.Batch
	input     string
	cursor    Cursor
	parseDone chan struct{} // closed when the parse stage is done with it
}

// pipeline carries every input to one output. Its followers fill batches
// from a fixed pool of max_inflight, so a slow or down output stops the
// reading at bounded memory; its sender delivers them in order and moves
// the output's cursors only past acknowledged batches.
type pipeline struct {
	name   string
	out    outputs.Output
	cfg    *Config
	store  *Store
	log    *slog.Logger
	stats  *OutputStats
	free   chan *pendingBatch // the pool: max_inflight batches
	ready  chan *pendingBatch // filled by the followers
	parsed chan *pendingBatch // parsed, waiting for the sender
	inputs []*pipelineInput

	onParseError string
	limiter      logLimiter
	dead         *deadLetter

	// Backfill: the stageTimestamp window, and when to give up on a
	// failing output.
	since, until time.Time
	giveUpAfter  time.Duration
	abort        func(error)
}

type pipelineInput struct {
	cfg      InputConfig
	stats    *Stats
	follower *follower
	cursor   *Cursor // from the checkpoint; nil on a first start
}

func newPipeline(oc outputs.Config, out outputs.Output, cfg *Config, store *Store, log *slog.Logger) *pipeline {
	name := oc.Name
	p := &pipeline{
		name:         name,
		out:          out,
		cfg:          cfg,
		store:        store,
		log:          log.With("output", name),
		stats:        newOutputStats(name),
		free:         make(chan *pendingBatch, cfg.MaxInflight),
		ready:        make(chan *pendingBatch, cfg.MaxInflight),
		parsed:       make(chan *pendingBatch, cfg.MaxInflight),
		onParseError: oc.OnParseError,
		dead:         newDeadLetter(oc.DeadLetter),
	}
	for range cfg.MaxInflight {
		p.free <- &pendingBatch{}
	}
	for _, in := range cfg.Inputs {
		pi := &pipelineInput{cfg: in, stats: &Stats{}}
		b := &batcher{p: p, input: in.Path, cfg: cfg.Batch}
		pi.follower = newFollower(in, name, cfg, log, pi.stats, b)
		b.f = pi.follower
		if c, ok := store.Cursor(name, in.Path); ok {
			pi.cursor = &c
		}
		p.inputs = append(p.inputs, pi)
	}
	return p
}

// parseAll parses the followers' batches until ready is closed, then
// closes parsed. Batches are parsed in parallel, one goroutine per CPU, and
// handed on in order; the sender waits for each batch's parse to finish.
// Parsing thus overlaps reading the next batch and sending the one before.
func (p *pipeline) parseAll() {
	defer close(p.parsed)
	workers := make(chan struct{}, runtime.GOMAXPROCS(0))
	for pb := range p.ready {
		pb.parseDone = make(chan struct{})
		workers <- struct{}{}
		go func() {
			defer func() { <-workers }()
			p.parse(pb)
			close(pb.parseDone)
		}()
		p.parsed <- pb
	}
}

// send delivers batches until parsed is closed. After ctx is done it stops
// sending and only returns the remaining batches to the pool.
func (p *pipeline) send(ctx context.Context) {
	for pb := range p.parsed {
		<-pb.parseDone
		if ctx.Err() == nil {
			if p.deliver(ctx, pb) {
				// Written before the next batch is sent: a crash of the
				// agent re-sends at most one batch. fsync (for a crash of
				// the machine) follows every checkpoint_interval.
				p.store.Set(p.name, pb.input, pb.cursor)
				p.flushCheckpoint()
			}
		}
		pb.Reset()
		p.free <- pb
	}
}

// parse scans the batch's lines once (the sink reads the fields), counts
// and logs the lines that are not audit events, and drops them if the
// output says on_parse_error: drop.
func (p *pipeline) parse(pb *pendingBatch) {
	var bad []int
	pb.Parse(func(i int, err error) {
		reason := parseErrorReason(err)
		p.stats.parseError(reason)
		p.limiter.log(reason, func(suppressed int) {
			p.log.Warn("line is not a valid audit event", "reason", reason, "error", err, "input", pb.input,
				"action", p.onParseError, "similar_suppressed", suppressed, "line_start", excerpt(pb.Line(i)))
		})
		bad = append(bad, i)
	})
	if p.onParseError == "drop" {
		p.stats.ParseDropped.Add(int64(len(bad)))
	} else {
		bad = bad[:0]
	}
	// Backfill's time window.
	if !p.since.IsZero() || !p.until.IsZero() {
		n := len(bad)
		for i := range pb.Len() {
			ev := pb.Event(i)
			if ev == nil || ev.StageTimestamp == nil {
				continue
			}
			ts, err := time.Parse(time.RFC3339Nano, string(ev.StageTimestamp))
			if err != nil {
				continue
			}
			if (!p.since.IsZero() && ts.Before(p.since)) || (!p.until.IsZero() && !ts.Before(p.until)) {
				bad = append(bad, i)
			}
		}
		p.stats.Filtered.Add(int64(len(bad) - n))
		slices.Sort(bad)
	}
	if len(bad) == 0 {
		return
	}
	keep := make([]int, 0, pb.Len()-len(bad))
	for i, j := 0, 0; i < pb.Len(); i++ {
		if j < len(bad) && bad[j] == i {
			j++
			continue
		}
		keep = append(keep, i)
	}
	pb.Keep(keep)
	pb.Parse(nil)
}

func excerpt(b []byte) string {
	if len(b) > 80 {
		b = b[:80]
	}
	return string(b)
}

func (p *pipeline) flushCheckpoint() {
	if err := p.store.Flush(false); err != nil {
		p.stats.CheckpointFails.Add(1)
		p.log.Error("cannot write checkpoint; delivery goes on, a crash now would re-send more", "error", err)
	}
}

// Retry timing for failed sends.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 30 * time.Second
)

// deliver sends pb until the output accepts it (lines it rejects for good
// go to the dead-letter file) or ctx is done. It reports whether the batch
// is settled, so that the checkpoint may move past it.
func (p *pipeline) deliver(ctx context.Context, pb *pendingBatch) bool {
	backoff := backoffMin
	events := pb.Len()
	for attempt := 1; ; attempt++ {
		if pb.Len() == 0 {
			return true
		}
		start := time.Now()
		err := p.out.Send(ctx, &pb.Batch)
		p.stats.observeSend(time.Since(start))
		if err == nil {
			p.stats.Events.Add(int64(pb.Len()))
			p.stats.Bytes.Add(int64(pb.Size()))
			p.stats.Batches.Add(1)
			p.stats.noteSuccess(pb)
			if attempt > 1 {
				p.log.Info("output recovered", "attempts", attempt, "events", events)
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
			if !p.deadLetter(ctx, pb, rejected.Lines, err) {
				return false
			}
			accepted := pb.Len() - len(rejected.Lines)
			p.stats.Events.Add(int64(accepted))
			p.stats.Batches.Add(1)
			if accepted > 0 {
				p.stats.noteSuccess(pb)
			}
			return true
		}
		p.stats.Failed.Add(1)
		p.stats.noteFailure()
		switch {
		case outputs.IsPermanent(err):
			all := make([]int, pb.Len())
			for i := range all {
				all[i] = i
			}
			return p.deadLetter(ctx, pb, all, err)
		case errors.As(err, &partial):
			p.stats.Events.Add(int64(pb.Len() - len(partial.Lines)))
			pb.Keep(partial.Lines)
			pb.Parse(nil)
		}
		if p.giveUpAfter > 0 && p.stats.FailingFor() >= p.giveUpAfter {
			p.abort(fmt.Errorf("output %s failing for %s: %w (run again to resume)", p.name, p.giveUpAfter, err))
			return false
		}
		if attempt == 1 || attempt%10 == 0 {
			p.log.Warn("send failed; retrying with backoff", "attempt", attempt, "events", pb.Len(), "error", err)
		}
		p.stats.Retries.Add(1)
		// Jitter between half and the whole backoff; never sooner than the
		// sink asked for.
		d := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		if errors.As(err, &after) && after.After > d {
			d = min(after.After, 5*time.Minute)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// deadLetter writes the given lines of pb to the dead-letter file. If that
// fails too (disk full), the batch stays unacknowledged and is tried again.
func (p *pipeline) deadLetter(ctx context.Context, pb *pendingBatch, lines []int, cause error) bool {
	for attempt := 1; ; attempt++ {
		err := p.dead.write(p.name, pb, lines, cause)
		if err == nil {
			p.stats.DeadLettered.Add(int64(len(lines)))
			p.log.Error("output rejected events permanently; they were written to the dead-letter file",
				"events", len(lines), "dead_letter", p.dead.path, "error", cause)
			return true
		}
		p.log.Error("cannot write the dead-letter file; the batch stays unacknowledged", "dead_letter", p.dead.path, "error", err)
		t := time.NewTimer(min(backoffMax, backoffMin<<min(attempt, 8)))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// batcher collects one follower's lines into batches.
type batcher struct {
	p        *pipeline
	f        *follower
	input    string
	cfg      BatchConfig
	cur      *pendingBatch
	deadline time.Time
	src      *source // the file of the last line added
	end      int64   // offset just past the last line added
}

// add copies line into the open batch, opening one (and waiting for a free
// one) if needed, and sends the batch when it is full.
func (b *batcher) add(ctx context.Context, line []byte, s *source, end int64) error {
	if b.cur != nil && b.cur.Size()+len(line)+1 > int(b.cfg.MaxBytes) {
		b.flush()
	}
	if b.cur == nil {
		if err := b.acquire(ctx); err != nil {
			return err
		}
		b.cur.input = b.input
		b.cur.Batch.Input = b.input
		b.deadline = time.Now().Add(b.cfg.MaxWait)
	}
	b.cur.Append(line)
	b.src, b.end = s, end
	if b.cur.Len() >= b.cfg.MaxEvents || b.cur.Size() >= int(b.cfg.MaxBytes) {
		b.flush()
	}
	return nil
}

// acquire takes a free batch, waiting while all are in flight (the output
// is slow or down). While it waits, the follower keeps its list of queued
// backups current, so that lumberjack deleting one is noticed and counted.
func (b *batcher) acquire(ctx context.Context) error {
	select {
	case b.cur = <-b.p.free:
		return nil
	default:
	}
	t := time.NewTicker(b.f.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case b.cur = <-b.p.free:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if err := b.f.refresh(); err != nil {
				b.f.log.Warn("cannot list the input directory", "error", err)
			}
		}
	}
}

// flush hands the open batch to the sender. It never blocks: ready has
// room for every batch of the pool.
func (b *batcher) flush() {
	if b.cur == nil {
		return
	}
	b.cur.cursor = b.f.cursorAt(b.src, b.end)
	b.f.stats.Lines.Add(int64(b.cur.Len()))
	b.p.ready <- b.cur
	b.cur, b.src = nil, nil
}

// flushDue flushes the open batch if it has waited max_wait.
func (b *batcher) flushDue() {
	if b.cur != nil && !time.Now().Before(b.deadline) {
		b.flush()
	}
}

// due returns when the open batch must be sent, if there is one.
func (b *batcher) due() (time.Time, bool) {
	return b.deadline, b.cur != nil
}
