// Package agent carries kube-apiserver audit events from sources (the
// audit log files, source/file) to outputs at least once: one read and
// one parse per input feeds every output, each output batches, retries
// and checkpoints on its own, and a slow or down output holds back only
// itself.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/parser"
	"github.com/audittail/audittail/policy"
	"github.com/audittail/audittail/source"
	"github.com/audittail/audittail/source/file"
	"github.com/audittail/audittail/source/webhook"
)

// BuildFunc makes the output described by a config entry.
type BuildFunc func(outputs.Config) (outputs.Output, error)

// Options tune an Agent beyond its Config.
type Options struct {
	// ResetCheckpoint moves an existing checkpoint aside and starts as on a
	// first start (see --reset-checkpoint).
	ResetCheckpoint bool
	// StopAtEOF makes every reader stop once it has read the live file to
	// its end (benchmarks; one-shot reads).
	StopAtEOF bool
	// Version is reported in audittail_build_info.
	Version string
	// Now is the readers' clock (tests); nil means time.Now.
	Now func() time.Time
}

// Backfill makes an Agent read a fixed set of files once, instead of
// following inputs: rotated backups (plain and .gz) in rotation order, the
// live file last and only up to its size at start.
type Backfill struct {
	// Paths are files or globs; empty means every backup and the live file
	// of every configured input.
	Paths []string
	// Since and Until keep events whose stageTimestamp is in [Since, Until);
	// zero means unbounded. Events without a stageTimestamp are kept.
	Since, Until time.Time
	// DryRun reads, parses and filters but sends nothing and writes no
	// checkpoint.
	DryRun bool
	// GiveUpAfter ends the run with an error when an output has been
	// failing for this long (the next run resumes). 0 means never.
	GiveUpAfter time.Duration
}

// BackfillGroup is the files of one log, in the order they are read.
type BackfillGroup = file.BackfillGroup

// BackfillGroups finds the files to backfill (see file.BackfillGroups).
func BackfillGroups(cfg *Config, paths []string) ([]BackfillGroup, error) {
	var inputs []string
	for _, in := range cfg.Inputs {
		if in.Type == InputFile { // a webhook input has nothing to backfill
			inputs = append(inputs, in.Path)
		}
	}
	return file.BackfillGroups(inputs, paths)
}

// Agent runs one hub per input and one stream per output and input.
type Agent struct {
	cfg     *Config
	opts    Options
	log     *slog.Logger
	store   *Store
	outputs []*output
	inputs  []*input
	streams []*stream

	// Backfill: the stageTimestamp window, and when to give up on a
	// failing output.
	since, until time.Time
	giveUpAfter  time.Duration

	checkpointFails atomic.Int64
	cpLimiter       logLimiter

	mu       sync.Mutex
	failure  error     // why the run was aborted
	stop     func()    // stops reading and sending at once
	deadline time.Time // when the shutdown must be over
}

// reader is what the agent needs of a source's reader.
type reader interface {
	source.Reader
	source.Aligner
	// Start is the position the reader was opened at (resolved: a first
	// start's is where it began).
	Start() source.Position
	// Pool holds the reader's chunks (memory accounting).
	Pool() *source.Pool
}

// input is one configured input: how to open a reader of it, its shared
// counters, and its hub while the agent runs.
type input struct {
	cfg InputConfig
	// key names the input in the checkpoint, the metrics and the logs: a
	// file input's path, a webhook input's "webhook:" and spool dir.
	key     string
	stats   *source.Stats
	open    func(pos json.RawMessage, pool int, cutAt source.Position) (reader, error)
	hub     *hub
	limiter logLimiter
	log     *slog.Logger
	onError map[string]string   // output -> on_parse_error, for the log line
	hook    *webhookInput       // a webhook input's spool and listener
	annot   *policy.Annotations // add_annotations (global and the input's)

	poolsMu sync.Mutex
	pools   []*source.Pool // of every reader opened (memory accounting)
}

func (in *input) track(p *source.Pool) {
	in.poolsMu.Lock()
	in.pools = append(in.pools, p)
	in.poolsMu.Unlock()
}

// chunksOut returns the chunks of the input's readers out now, and the
// most that were ever out at once in one reader's pool, with the pools'
// size: memory is bounded by the readers (one, plus one per output
// catching up) times the pool size times batch.max_bytes.
func (in *input) chunksOut() (now, peak, readers int) {
	in.poolsMu.Lock()
	defer in.poolsMu.Unlock()
	for _, p := range in.pools {
		n, pk := p.InUse()
		now += n
		peak = max(peak, pk)
	}
	return now, peak, len(in.pools)
}

// New opens the checkpoint and builds every output. On error nothing is
// left open.
func New(cfg *Config, log *slog.Logger, build BuildFunc, opts Options) (*Agent, error) {
	store, err := OpenStore(cfg.StateDir, opts.ResetCheckpoint, checkFilePosition)
	if err != nil {
		return nil, err
	}
	if store.Recovered != "" {
		log.Warn(store.Recovered)
	}
	a, err := newAgent(cfg, log, build, opts, store)
	if err != nil {
		store.Close()
		return nil, err
	}
	for _, in := range a.inputs {
		if in.cfg.Type == InputWebhook {
			if err := a.openWebhook(in); err != nil {
				a.closeWebhooks()
				a.closeOutputs(context.Background())
				store.Close()
				return nil, err
			}
			continue
		}
		in.open = func(pos json.RawMessage, pool int, cutAt source.Position) (reader, error) {
			return file.Follow(a.fileConfig(in, pool, cutAt), pos)
		}
	}
	return a, nil
}

// closeWebhooks closes the webhook inputs' listeners and spools.
func (a *Agent) closeWebhooks() {
	for _, in := range a.inputs {
		if in.hook != nil {
			if err := in.hook.close(); err != nil {
				a.log.Error("cannot close the spool", "input", in.key, "error", err)
			}
		}
	}
}

// NewBackfill prepares a one-shot read of groups (see BackfillGroups)
// through every configured output. Its positions live in their own file in
// state_dir, so an interrupted backfill resumes where it stopped and the
// agent's own positions are untouched.
func NewBackfill(cfg *Config, log *slog.Logger, build BuildFunc, opts Options, bf Backfill, groups []BackfillGroup) (*Agent, error) {
	store, err := openStore(cfg.StateDir, BackfillCheckpointFile, opts.ResetCheckpoint, checkFilePosition)
	if err != nil {
		return nil, err
	}
	store.memoryOnly = bf.DryRun
	c := *cfg
	c.Inputs = nil
	for _, g := range groups {
		c.Inputs = append(c.Inputs, InputConfig{Path: g.Live, StartAt: StartBeginning})
	}
	a, err := newAgent(&c, log, build, opts, store)
	if err != nil {
		store.Close()
		return nil, err
	}
	a.since, a.until, a.giveUpAfter = bf.Since, bf.Until, bf.GiveUpAfter
	for i, in := range a.inputs {
		files := groups[i].Files
		in.open = func(pos json.RawMessage, pool int, cutAt source.Position) (reader, error) {
			return file.Backfill(a.fileConfig(in, pool, cutAt), files, pos)
		}
	}
	return a, nil
}

// checkFilePosition checks a position in the checkpoint: a webhook
// input's (keyed webhook:<spool dir>) or a file input's.
func checkFilePosition(_, input string, state json.RawMessage) error {
	if strings.HasPrefix(input, "webhook:") {
		return webhook.CheckPosition(state)
	}
	return file.CheckPosition(state)
}

func newAgent(cfg *Config, log *slog.Logger, build BuildFunc, opts Options, store *Store) (*Agent, error) {
	a := &Agent{cfg: cfg, opts: opts, log: log, store: store}
	for i, oc := range cfg.Outputs {
		out, err := build(oc)
		if err != nil {
			a.closeOutputs(context.Background())
			return nil, fmt.Errorf("outputs[%d] (%s %q): %w", i, oc.Type, oc.Name, err)
		}
		pol, err := LoadOutputPolicy(oc)
		if err != nil {
			out.Close(context.Background())
			a.closeOutputs(context.Background())
			return nil, fmt.Errorf("outputs[%d] (%s %q): %w", i, oc.Type, oc.Name, err)
		}
		a.outputs = append(a.outputs, &output{
			name: oc.Name, out: out, stats: newOutputStats(oc.Name), dead: newDeadLetter(oc.DeadLetter),
			onParseError: oc.OnParseError, policy: pol, log: log.With("output", oc.Name),
		})
	}
	for _, ic := range cfg.Inputs {
		in := &input{cfg: ic, key: ic.Key(), stats: &source.Stats{}, log: log.With("input", ic.Key()), onError: map[string]string{}}
		annot := maps.Clone(cfg.AddAnnotations)
		if annot == nil {
			annot = map[string]string{}
		}
		maps.Copy(annot, ic.AddAnnotations)
		in.annot = policy.NewAnnotations(annot)
		a.inputs = append(a.inputs, in)
		for _, o := range a.outputs {
			in.onError[o.name] = o.onParseError
			a.streams = append(a.streams, &stream{a: a, out: o, in: in})
		}
	}
	return a, nil
}

func (a *Agent) fileConfig(in *input, pool int, cutAt source.Position) file.Config {
	return file.Config{
		Path: in.cfg.Path, StartAt: string(in.cfg.StartAt), MaxLineBytes: int(a.cfg.MaxLineBytes),
		PollInterval: a.cfg.PollInterval, MaxEvents: a.cfg.Batch.MaxEvents, MaxBytes: int(a.cfg.Batch.MaxBytes),
		MaxWait: a.cfg.Batch.MaxWait, Pool: pool, StopAtEOF: a.opts.StopAtEOF,
		Log: a.log, Stats: in.stats, Now: a.opts.Now, CutAt: cutAt,
	}
}

// hubPool is the hub's chunk pool: enough that a stream's queue
// (max_inflight) fills, and the stream is detached, before the reader runs
// out of chunks: the slowest attached stream can never hold the others
// back. It bounds the memory of an input: hubPool * batch.max_bytes.
func (a *Agent) hubPool() int { return 2*a.cfg.MaxInflight + runtime.GOMAXPROCS(0) + 4 }

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
	for _, o := range a.outputs {
		if err := o.out.Close(ctx); err != nil {
			a.log.Error("cannot close output", "output", o.name, "error", err)
		}
		if err := o.dead.close(); err != nil {
			a.log.Error("cannot close dead-letter file", "output", o.name, "error", err)
		}
	}
}

// Run follows the inputs until ctx is done (or, with StopAtEOF or a
// backfill, until every input is read to its end), then stops reading,
// delivers the batches in flight, closes the outputs and writes the
// checkpoint, all within one shutdown_timeout. Run may be called once; it
// closes everything New opened, also on error.
func (a *Agent) Run(ctx context.Context) (err error) {
	defer a.store.Close()
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	sendCtx, cancelSend := context.WithCancel(context.Background())
	defer cancelSend()
	defer func() {
		// One deadline for the whole shutdown: what the senders did not use
		// of shutdown_timeout is what closing the outputs gets.
		closeCtx, cancel := context.WithDeadline(context.Background(), a.shutdownDeadline(readCtx))
		defer cancel()
		a.stopWebhooks(closeCtx)
		serr := a.syncOutputs()
		a.closeOutputs(closeCtx)
		if serr == nil {
			points := a.trimPoints()
			if serr = a.store.Flush(true); serr == nil {
				a.trim(points)
			}
		}
		a.closeWebhooks()
		err = errors.Join(err, serr)
		a.logSummary()
		a.mu.Lock()
		err = errors.Join(a.failure, err)
		a.mu.Unlock()
	}()

	if err := a.openHubs(); err != nil {
		return err
	}
	if err := a.store.Flush(true); err != nil {
		a.closeHubs()
		return err
	}
	a.serveWebhooks(readCtx)
	a.mu.Lock()
	a.stop = func() { stopReading(); cancelSend() }
	a.mu.Unlock()
	// Reading stops on a signal or on a fatal error; in-flight batches then
	// get what is left of shutdown_timeout to be delivered.
	stopTimer := context.AfterFunc(readCtx, func() {
		time.AfterFunc(time.Until(a.shutdownDeadline(readCtx)), cancelSend)
	})
	defer stopTimer()

	flusherDone := make(chan struct{})
	go a.flushEvery(readCtx, flusherDone)

	var wg sync.WaitGroup
	var errMu sync.Mutex
	var errs error
	fail := func(e error) {
		errMu.Lock()
		errs = errors.Join(errs, e)
		errMu.Unlock()
		stopReading()
	}
	for _, in := range a.inputs {
		wg.Go(func() {
			if err := in.hub.run(readCtx); err != nil {
				err = fmt.Errorf("input %s: %w", in.key, err)
				a.log.Error("cannot follow the input; stopping", "error", err)
				fail(err)
			}
		})
	}
	for _, s := range a.streams {
		wg.Go(func() {
			if err := s.run(readCtx, sendCtx); err != nil {
				err = fmt.Errorf("input %s (output %s): %w", s.in.key, s.out.name, err)
				a.log.Error("cannot follow the input; stopping", "error", err)
				fail(err)
			}
		})
	}
	wg.Wait()
	stopReading()
	<-flusherDone
	return errs
}

// shutdownDeadline is shutdown_timeout after reading stopped (ctx done).
func (a *Agent) shutdownDeadline(ctx context.Context) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.deadline.IsZero() {
		a.deadline = time.Now().Add(a.cfg.ShutdownTimeout)
	}
	return a.deadline
}

// openHubs opens one reader per input, at the position most of its
// outputs share; the other outputs start on readers of their own and join
// the hub once they catch up. A first start records where it began, so
// that a crash before the first delivery does not make the next start a
// first start again. On error nothing is left open.
func (a *Agent) openHubs() error {
	for _, in := range a.inputs {
		var mine []*stream
		for _, s := range a.streams {
			if s.in == in {
				mine = append(mine, s)
			}
		}
		common := commonPosition(a.store, in.key, mine)
		r, err := in.open(common, a.hubPool(), source.Position{})
		if err != nil {
			a.closeHubs()
			return err
		}
		in.track(r.Pool())
		in.hub = newHub(in, r, r.Start())
		in.stats.Open.Store(true)
		for _, s := range mine {
			st := a.store.Position(s.out.name, in.key)
			switch {
			case string(st) == string(common):
				s.pos = r.Start()
				if st == nil {
					a.store.Set(s.out.name, in.key, s.pos.State)
				}
				in.hub.attach(s)
			default:
				// Behind or elsewhere: read on its own first.
				s.pos = source.Position{State: st}
			}
		}
	}
	return nil
}

func (a *Agent) closeHubs() {
	for _, in := range a.inputs {
		if in.hub != nil {
			in.hub.reader.Close()
			in.hub = nil
		}
	}
}

// commonPosition returns the stored position most of the streams share
// (the first stream's on a tie).
func commonPosition(store *Store, input string, streams []*stream) json.RawMessage {
	count := map[string]int{}
	var best json.RawMessage
	bestN := 0
	for _, s := range streams {
		st := store.Position(s.out.name, input)
		count[string(st)]++
		if n := count[string(st)]; n > bestN {
			best, bestN = st, n
		}
	}
	return best
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
			if err := a.syncAndFlush(); err != nil {
				a.checkpointFailed(err)
			}
		}
	}
}

// syncAndFlush makes what the outputs acknowledged durable (outputs that
// keep it in the page cache, and the dead-letter files), then fsyncs the
// checkpoint: after a crash of the machine the checkpoint never names
// lines a sink does not have.
//
// Spool segments every output's checkpoint is past are deleted after it,
// by the positions as they were before the fsync (those it made durable).
func (a *Agent) syncAndFlush() error {
	if err := a.syncOutputs(); err != nil {
		return err // keep the older fsynced checkpoint
	}
	points := a.trimPoints()
	if err := a.store.Flush(true); err != nil {
		return err
	}
	a.trim(points)
	return nil
}

// serveWebhooks answers the webhook inputs' requests until ctx is done;
// then they answer 503 while the agent stops.
func (a *Agent) serveWebhooks(ctx context.Context) {
	for _, in := range a.inputs {
		if in.hook == nil {
			continue
		}
		go in.hook.serve(in.log)
		context.AfterFunc(ctx, func() { in.hook.handler.Close() })
	}
}

// stopWebhooks waits (until ctx is done) for the requests being spooled.
func (a *Agent) stopWebhooks(ctx context.Context) {
	for _, in := range a.inputs {
		if in.hook != nil {
			in.hook.stop(ctx)
		}
	}
}

// syncOutputs syncs the outputs that can and the dead-letter files.
func (a *Agent) syncOutputs() error {
	var errs error
	for _, o := range a.outputs {
		if s, ok := o.out.(outputs.Syncer); ok {
			if err := s.Sync(); err != nil {
				errs = errors.Join(errs, fmt.Errorf("output %s: cannot sync: %w", o.name, err))
			}
		}
		if err := o.dead.sync(); err != nil {
			errs = errors.Join(errs, err)
		}
	}
	return errs
}

// flushCheckpoint writes (without fsync) the checkpoint after a batch.
func (a *Agent) flushCheckpoint() {
	if err := a.store.Flush(false); err != nil {
		a.checkpointFailed(err)
	}
}

// checkpointFailed counts a failed checkpoint write and logs it, at most
// once per 10s (a full disk fails every batch).
func (a *Agent) checkpointFailed(err error) {
	a.checkpointFails.Add(1)
	a.cpLimiter.log("checkpoint", func(suppressed int) {
		a.log.Error("cannot write checkpoint; delivery goes on, a crash now would re-send more", "error", err, "similar_suppressed", suppressed)
	})
}

// inWindow reports whether ev is in backfill's --since/--until window.
func (a *Agent) inWindow(ev *parser.Event) bool {
	if ev.StageTimestamp == nil {
		return true
	}
	ts, err := parser.ParseTime(ev.StageTimestamp)
	if err != nil {
		return true
	}
	return (a.since.IsZero() || !ts.Before(a.since)) && (a.until.IsZero() || ts.Before(a.until))
}

// annotate adds the input's add_annotations to every valid event of c.
func (in *input) annotate(c *source.Chunk) {
	if in.annot == nil {
		return
	}
	c.Rewrite(func(dst []byte, i int, line []byte) []byte {
		if !c.OK[i] {
			return append(dst, line...)
		}
		return in.annot.Add(dst, line, c.Events[i].Annotations)
	})
}

// logParseErrors logs the chunk's invalid lines, rate-limited per reason.
func (in *input) logParseErrors(c *source.Chunk) {
	for _, e := range c.Errs {
		reason := parseErrorReason(e.Err)
		in.limiter.log(reason, func(suppressed int) {
			in.log.Warn("line is not a valid audit event", "reason", reason, "error", e.Err,
				"on_parse_error", in.onError, "similar_suppressed", suppressed, "line_start", excerpt(c.Line(e.Line)))
		})
	}
}

func excerpt(b []byte) string {
	if len(b) > 80 {
		b = b[:80]
	}
	return string(b)
}

// Summary is what an agent did, per output and input.
type Summary struct {
	Output string
	Input  string
	Read   StatsSnapshot
	Sent   OutputSnapshot
}

// StatsSnapshot is a copy of an input's counters; Lines counts the lines
// this output's stream took.
type StatsSnapshot struct {
	ReadBytes, Lines, OversizeLines, TornLines, Rotations, Truncations, LostBytes, LostFiles int64
}

// OutputSnapshot is a copy of OutputStats.
type OutputSnapshot struct {
	Events, Bytes, Batches, Failed, Retries, DeadLettered, ParseDropped, Filtered, CheckpointFails int64
	ParseErrors                                                                                    map[string]int64
}

// Summaries returns the counters of every output and input.
func (a *Agent) Summaries() []Summary {
	var out []Summary
	for _, s := range a.streams {
		st := s.out.stats
		o := OutputSnapshot{st.Events.Load(), st.Bytes.Load(), st.Batches.Load(), st.Failed.Load(), st.Retries.Load(),
			st.DeadLettered.Load(), st.ParseDropped.Load(), st.Filtered.Load(), a.checkpointFails.Load(), st.ParseErrors()}
		r := s.in.stats
		out = append(out, Summary{Output: s.out.name, Input: s.in.key, Sent: o, Read: StatsSnapshot{
			r.ReadBytes.Load(), s.lines.Load(), r.OversizeLines.Load(), r.TornLines.Load(), r.Rotations.Load(), r.Truncations.Load(), r.LostBytes.Load(), r.LostFiles.Load(),
		}})
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
