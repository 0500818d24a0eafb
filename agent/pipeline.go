package agent

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/audittail/audittail/outputs"
)

// pendingBatch is a batch on its way to an output, with the cursor to
// commit once the output acknowledges it.
type pendingBatch struct {
	outputs.Batch
	input  string
	cursor Cursor
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
	free   chan *pendingBatch
	ready  chan *pendingBatch
	inputs []*pipelineInput
}

type pipelineInput struct {
	cfg      InputConfig
	stats    *Stats
	follower *follower
	cursor   *Cursor // from the checkpoint; nil on a first start
}

func newPipeline(name string, out outputs.Output, cfg *Config, store *Store, log *slog.Logger) *pipeline {
	p := &pipeline{
		name:  name,
		out:   out,
		cfg:   cfg,
		store: store,
		log:   log.With("output", name),
		stats: &OutputStats{},
		free:  make(chan *pendingBatch, cfg.MaxInflight),
		ready: make(chan *pendingBatch, cfg.MaxInflight),
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

// send delivers batches until ready is closed. After ctx is done it stops
// sending and only returns the remaining batches to the pool.
func (p *pipeline) send(ctx context.Context) {
	for pb := range p.ready {
		if ctx.Err() == nil && p.deliver(ctx, pb) {
			p.store.Set(p.name, pb.input, pb.cursor)
			if p.cfg.CheckpointInterval == 0 {
				p.flushCheckpoint()
			}
		}
		pb.Reset()
		p.free <- pb
	}
}

func (p *pipeline) flushCheckpoint() {
	if err := p.store.Flush(); err != nil {
		p.stats.CheckpointFails.Add(1)
		p.log.Error("cannot write checkpoint; delivery goes on, a crash now would re-send more", "error", err)
	}
}

// Retry timing for failed sends.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 30 * time.Second
)

// deliver sends pb until the output accepts it, rejects it permanently, or
// ctx is done. It reports whether the batch is settled (acknowledged or
// dropped as permanently rejected).
func (p *pipeline) deliver(ctx context.Context, pb *pendingBatch) bool {
	backoff := backoffMin
	for attempt := 1; ; attempt++ {
		err := p.out.Send(ctx, &pb.Batch)
		if err == nil {
			p.stats.Events.Add(int64(pb.Len()))
			p.stats.Bytes.Add(int64(pb.Size()))
			p.stats.Batches.Add(1)
			if attempt > 1 {
				p.log.Info("output recovered", "attempts", attempt)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		p.stats.Failed.Add(1)
		if outputs.IsPermanent(err) {
			p.stats.Dropped.Add(int64(pb.Len()))
			p.log.Error("output rejected a batch permanently; it is not retried", "events", pb.Len(), "error", err)
			return true
		}
		if attempt == 1 || attempt%10 == 0 {
			p.log.Warn("send failed; retrying with backoff", "attempt", attempt, "events", pb.Len(), "error", err)
		}
		p.stats.Retries.Add(1)
		// Full jitter between half and the whole backoff.
		d := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
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
