// Package agent follows kube-apiserver audit logs through lumberjack
// rotation and delivers their lines to outputs at least once: it owns the
// files, the positions, the batches, the retries and the checkpoint.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/audittail/audittail/outputs"
)

// BuildFunc makes the output described by a config entry.
type BuildFunc func(outputs.Config) (outputs.Output, error)

// Options tune an Agent beyond its Config.
type Options struct {
	// ResetCheckpoint moves an existing checkpoint aside and starts as on a
	// first start (see --reset-checkpoint).
	ResetCheckpoint bool
	// StopAtEOF makes every follower stop once it has read the live file to
	// its end (benchmarks; one-shot reads).
	StopAtEOF bool
	// Version is reported in audittail_build_info.
	Version string
}

// Agent runs one pipeline per output.
type Agent struct {
	cfg       *Config
	opts      Options
	log       *slog.Logger
	store     *Store
	pipelines []*pipeline

	mu      sync.Mutex
	failure error  // why the run was aborted
	stop    func() // stops reading and sending at once
}

// New opens the checkpoint and builds every output. On error nothing is
// left open.
func New(cfg *Config, log *slog.Logger, build BuildFunc, opts Options) (*Agent, error) {
	store, err := OpenStore(cfg.StateDir, opts.ResetCheckpoint)
	if err != nil {
		return nil, err
	}
	if store.Recovered != "" {
		log.Warn(store.Recovered)
	}
	return newAgent(cfg, log, build, opts, store, nil, nil)
}

// NewBackfill prepares a one-shot read of groups (see BackfillGroups)
// through every configured output. Its cursors live in their own file in
// state_dir, so an interrupted backfill resumes where it stopped and the
// agent's own cursors are untouched.
func NewBackfill(cfg *Config, log *slog.Logger, build BuildFunc, opts Options, bf Backfill, groups []BackfillGroup) (*Agent, error) {
	store, err := openStore(cfg.StateDir, BackfillCheckpointFile, opts.ResetCheckpoint)
	if err != nil {
		return nil, err
	}
	store.memoryOnly = bf.DryRun
	c := *cfg
	c.Inputs = nil
	for _, g := range groups {
		c.Inputs = append(c.Inputs, InputConfig{Path: g.Live, StartAt: StartBeginning})
	}
	return newAgent(&c, log, build, opts, store, &bf, groups)
}

func newAgent(cfg *Config, log *slog.Logger, build BuildFunc, opts Options, store *Store, bf *Backfill, groups []BackfillGroup) (*Agent, error) {
	a := &Agent{cfg: cfg, opts: opts, log: log, store: store}
	for i, oc := range cfg.Outputs {
		out, err := build(oc)
		if err != nil {
			a.closeOutputs(context.Background())
			return nil, fmt.Errorf("outputs[%d] (%s %q): %w", i, oc.Type, oc.Name, err)
		}
		p := newPipeline(oc, out, cfg, store, log)
		p.abort = a.abort
		for j, in := range p.inputs {
			if opts.StopAtEOF {
				in.follower.stopAt = func(*source) bool { return true }
			}
			if bf != nil {
				in.follower.fixed = groups[j].Files
				if in.follower.fixed == nil {
					in.follower.fixed = []fileRef{} // backfill mode even with nothing to read
				}
			}
		}
		if bf != nil {
			p.since, p.until, p.giveUpAfter = bf.Since, bf.Until, bf.GiveUpAfter
		}
		a.pipelines = append(a.pipelines, p)
	}
	return a, nil
}

// abort ends the run with err (an output that failed for too long).
func (a *Agent) abort(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failure == nil {
		a.failure = err
		a.log.Error("giving up", "error", err)
	}
	if a.stop != nil {
		a.stop()
	}
}

func (a *Agent) closeOutputs(ctx context.Context) {
	for _, p := range a.pipelines {
		if err := p.out.Close(ctx); err != nil {
			a.log.Error("cannot close output", "output", p.name, "error", err)
		}
		if err := p.dead.close(); err != nil {
			a.log.Error("cannot close dead-letter file", "output", p.name, "error", err)
		}
	}
}

// Run follows the inputs until ctx is done (or, with StopAtEOF, until every
// input is read to its end), then stops reading, delivers the batches in
// flight within shutdown_timeout, closes the outputs and writes the
// checkpoint.
func (a *Agent) Run(ctx context.Context) error {
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	// Each follower finds its file before anything runs, and a first start
	// records where it began, so that a crash before the first delivery
	// does not make the next start a first start again.
	for _, p := range a.pipelines {
		for _, in := range p.inputs {
			if err := in.follower.resolveStart(in.cursor, in.cfg.StartAt); err != nil {
				return fmt.Errorf("input %s: %w", in.cfg.Path, err)
			}
			if in.cursor == nil {
				a.store.Set(p.name, in.cfg.Path, in.follower.initialCursor())
			}
		}
	}
	if err := a.store.Flush(true); err != nil {
		return err
	}

	sendCtx, cancelSend := context.WithCancel(context.Background())
	defer cancelSend()
	a.mu.Lock()
	a.stop = func() { stopReading(); cancelSend() }
	a.mu.Unlock()
	// Reading stops on a signal or on a follower's fatal error; in-flight
	// batches then get shutdown_timeout to be delivered.
	stopTimer := context.AfterFunc(readCtx, func() {
		time.AfterFunc(a.cfg.ShutdownTimeout, cancelSend)
	})
	defer stopTimer()

	flusherDone := make(chan struct{})
	go a.flushEvery(readCtx, flusherDone)

	var wg sync.WaitGroup
	errs := make(chan error, len(a.pipelines)*len(a.cfg.Inputs))
	for _, p := range a.pipelines {
		var readers sync.WaitGroup
		for _, in := range p.inputs {
			readers.Add(1)
			go func() {
				defer readers.Done()
				if err := in.follower.follow(readCtx); err != nil {
					err = fmt.Errorf("input %s (output %s): %w", in.cfg.Path, p.name, err)
					a.log.Error("cannot follow the input; stopping", "error", err)
					errs <- err
					stopReading()
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.send(sendCtx)
		}()
		go p.parseAll()
		go func() {
			readers.Wait()
			close(p.ready)
		}()
	}
	wg.Wait()
	stopReading()
	<-flusherDone

	closeCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	a.closeOutputs(closeCtx)
	var err error
	if ferr := a.store.Flush(true); ferr != nil {
		err = ferr
	}
	a.logSummary()
	close(errs)
	for e := range errs {
		err = errors.Join(err, e)
	}
	a.mu.Lock()
	err = errors.Join(a.failure, err)
	a.mu.Unlock()
	return err
}

func (a *Agent) flushEvery(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(a.cfg.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.store.Flush(true); err != nil {
				a.log.Error("cannot write checkpoint", "error", err)
			}
		}
	}
}

// Summary is what an agent did, per output and input.
type Summary struct {
	Output string
	Input  string
	Read   StatsSnapshot
	Sent   OutputSnapshot
}

// StatsSnapshot is a copy of Stats.
type StatsSnapshot struct {
	ReadBytes, Lines, OversizeLines, TornLines, Rotations, Truncations, LostBytes, LostFiles int64
}

// OutputSnapshot is a copy of OutputStats.
type OutputSnapshot struct {
	Events, Bytes, Batches, Failed, Retries, DeadLettered, ParseDropped, Filtered, CheckpointFails int64
	ParseErrors                                                                                    map[string]int64
}

// Summaries returns the counters of every pipeline and input.
func (a *Agent) Summaries() []Summary {
	var out []Summary
	for _, p := range a.pipelines {
		st := p.stats
		o := OutputSnapshot{st.Events.Load(), st.Bytes.Load(), st.Batches.Load(), st.Failed.Load(), st.Retries.Load(),
			st.DeadLettered.Load(), st.ParseDropped.Load(), st.Filtered.Load(), st.CheckpointFails.Load(), st.ParseErrors()}
		for _, in := range p.inputs {
			s := in.stats
			out = append(out, Summary{Output: p.name, Input: in.cfg.Path, Sent: o, Read: StatsSnapshot{
				s.ReadBytes.Load(), s.Lines.Load(), s.OversizeLines.Load(), s.TornLines.Load(), s.Rotations.Load(), s.Truncations.Load(), s.LostBytes.Load(), s.LostFiles.Load(),
			}})
		}
	}
	return out
}

func (a *Agent) logSummary() {
	for _, s := range a.Summaries() {
		a.log.Info("summary", "output", s.Output, "input", s.Input,
			"events_delivered", s.Sent.Events, "batches", s.Sent.Batches, "retries", s.Sent.Retries, "dead_lettered", s.Sent.DeadLettered, "parse_errors", s.Sent.ParseErrors, "parse_dropped", s.Sent.ParseDropped,
			"lines_read", s.Read.Lines, "bytes_read", s.Read.ReadBytes, "rotations", s.Read.Rotations, "truncations", s.Read.Truncations,
			"oversize_lines", s.Read.OversizeLines, "torn_lines", s.Read.TornLines, "lost_bytes", s.Read.LostBytes, "lost_files", s.Read.LostFiles)
	}
}
