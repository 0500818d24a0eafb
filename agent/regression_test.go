package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/file"
)

// Regression tests for defects found in review.

// startWithClock runs the agent with the followers' clock under the test's
// control.
func (h *harness) startWithClock(clock *atomic.Int64) {
	h.t.Helper()
	log := h.log()
	a, err := New(h.cfg, log, func(c outputs.Config) (outputs.Output, error) { return file.New(file.Options{Path: h.out}, log) },
		Options{Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.agent, h.cancel, h.done = a, cancel, make(chan error, 1)
	go func() { h.done <- a.Run(ctx) }()
	h.t.Cleanup(func() {
		if h.cancel != nil {
			h.stop()
		}
	})
}

func TestAFileOpenedInTheMillisecondOfItsRotationDoesNotBringBackThePreviousOne(t *testing.T) {
	h := newHarness(t, nil)
	var clock atomic.Int64
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	clock.Store(t0.UnixNano())
	appendLines(t, h.input, events(0, 10)) // file A
	h.startWithClock(&clock)
	h.waitDelivered(10)

	// A rotates at t1; the agent opens B within that same millisecond.
	t1 := t0.Add(time.Minute).Add(123 * time.Millisecond)
	clock.Store(t1.Add(400 * time.Microsecond).UnixNano())
	a := backupName(h.input, t1)
	if err := os.Rename(h.input, a); err != nil {
		t.Fatal(err)
	}
	appendLines(t, h.input, events(10, 20)) // file B
	h.waitDelivered(20)
	time.Sleep(5 * h.cfg.PollInterval)
	gzipFile(t, a)

	// B rotates and is compressed before the agent moves on; then C.
	t2 := t1.Add(time.Minute)
	clock.Store(t2.UnixNano())
	b := backupName(h.input, t2)
	data, _ := os.ReadFile(h.input)
	os.WriteFile(b, data, 0o644)
	gzipFile(t, b)
	os.Remove(h.input)
	appendLines(t, h.input, events(20, 30)) // file C
	h.waitDelivered(30)
	time.Sleep(10 * h.cfg.PollInterval)
	h.stop()
	assertLines(t, h.delivered(), events(0, 30))
}

func TestACorruptBackupIsSkippedCountedAndTheRestDelivered(t *testing.T) {
	h := newHarness(t, nil)
	appendLines(t, h.input, events(0, 10))
	h.start(Options{})
	h.waitDelivered(10)
	h.stop()
	// While down: a rotation, a junk .gz after it, more in the live file.
	appendLines(t, h.input, events(10, 20))
	os.Rename(h.input, backupName(h.input, time.Now().Add(time.Second)))
	os.WriteFile(backupName(h.input, time.Now().Add(2*time.Second))+".gz", []byte("not gzip"), 0o644)
	appendLines(t, h.input, events(20, 30))
	h.start(Options{})
	h.waitDelivered(30)
	time.Sleep(5 * h.cfg.PollInterval)
	s := h.stop()
	assertLines(t, h.delivered(), events(0, 30))
	if s.Read.LostFiles != 1 || !strings.Contains(h.logBuf.String(), "cannot read a rotated backup") {
		t.Fatalf("the corrupt backup was not counted (%d lost files) and logged:\n%s", s.Read.LostFiles, h.logBuf.String())
	}
}

func TestNoInputFileStaysOpenAfterRun(t *testing.T) {
	h := newHarness(t, nil)
	appendLines(t, h.input, events(0, 10))
	h.start(Options{})
	h.waitDelivered(10)
	os.Rename(h.input, backupName(h.input, time.Now()))
	appendLines(t, h.input, events(10, 20))
	h.waitDelivered(20)
	h.stop()
	entries, _ := os.ReadDir("/proc/self/fd")
	for _, e := range entries {
		if p, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(p, filepath.Dir(h.input)) {
			t.Fatalf("%s is still open after Run returned", p)
		}
	}
}

// rejectFirst rejects the first line of every batch and takes the rest.
type rejectFirst struct{}

func (rejectFirst) Send(ctx context.Context, b *outputs.Batch) error {
	return &outputs.RejectedError{Lines: []int{0}, Err: os.ErrInvalid}
}
func (rejectFirst) Close(ctx context.Context) error { return nil }

func TestAnOutputThatRejectsSomeLinesStaysReady(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Metrics.UnreadyAfter = 100 * time.Millisecond; c.Batch.MaxEvents = 10 })
	a, err := New(h.cfg, h.log(), func(c outputs.Config) (outputs.Output, error) { return rejectFirst{}, nil }, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for i := range 10 {
		appendLines(t, h.input, events(i*10, i*10+10))
		time.Sleep(40 * time.Millisecond)
	}
	waitFor(t, func() bool { return a.outputs[0].stats.Batches.Load() >= 10 }, "ten batches")
	if ok, why := a.Ready(); !ok {
		t.Fatalf("unready although the output takes 9 of 10 lines: %v", why)
	}
	if f := a.outputs[0].stats.Failed.Load(); f != 0 {
		t.Fatalf("%d sends counted as failed", f)
	}
}

func TestBackfillEndsWhenAnInputHasNoFiles(t *testing.T) {
	h := newHarness(t, nil)
	appendLines(t, h.input, events(0, 10))
	os.MkdirAll(filepath.Join(h.dir, "other"), 0o755)
	h.cfg.Inputs = append(h.cfg.Inputs, InputConfig{Path: filepath.Join(h.dir, "other", "audit.log"), StartAt: StartBeginning})
	groups, err := BackfillGroups(h.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := h.log()
	a, err := NewBackfill(h.cfg, log, func(c outputs.Config) (outputs.Output, error) { return file.New(file.Options{Path: h.out}, log) }, Options{}, Backfill{}, groups)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Run(ctx); err != nil || ctx.Err() != nil {
		t.Fatalf("backfill did not end by itself: %v %v", err, ctx.Err())
	}
	assertLines(t, h.delivered(), events(0, 10))
}

func TestATornCheckpointFallsBackToItsFsyncedCopy(t *testing.T) {
	h := newHarness(t, nil)
	appendLines(t, h.input, events(0, 10))
	h.start(Options{})
	h.waitDelivered(10)
	h.stop() // the last checkpoint is fsynced, with its copy
	// A crash of the machine tears the unsynced main file.
	if err := os.WriteFile(filepath.Join(h.cfg.StateDir, CheckpointFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	appendLines(t, h.input, events(10, 20))
	h.start(Options{})
	h.waitDelivered(20)
	h.stop()
	assertLines(t, h.delivered(), events(0, 20))
	if !strings.Contains(h.logBuf.String(), "resumed from the last fsynced copy") {
		t.Fatalf("the fallback was not logged:\n%s", h.logBuf.String())
	}
	// Both files torn: a clear error, as before.
	os.WriteFile(filepath.Join(h.cfg.StateDir, CheckpointFile), []byte("{"), 0o600)
	os.WriteFile(filepath.Join(h.cfg.StateDir, CheckpointFile+".synced"), []byte("{"), 0o600)
	if _, err := New(h.cfg, h.log(), func(c outputs.Config) (outputs.Output, error) { return file.New(file.Options{Path: h.out}, nil) }, Options{}); err == nil || !strings.Contains(err.Error(), "--reset-checkpoint") {
		t.Fatalf("both copies torn: %v", err)
	}
}

func TestATornGzipBackupAtTheCheckpointIsSkippedCountedAndTheNextBackupsDelivered(t *testing.T) {
	h := newHarness(t, nil)
	appendLines(t, h.input, events(0, 200)) // file A
	h.start(Options{})
	h.waitDelivered(200)
	h.stop()

	// While the agent is down A is rotated and compressed, and a crash
	// tears its .gz; B is rotated after it; C is live.
	t0 := time.Now()
	a := backupName(h.input, t0)
	if err := os.Rename(h.input, a); err != nil {
		t.Fatal(err)
	}
	gzipFile(t, a)
	gz, err := os.ReadFile(a + ".gz")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a+".gz", gz[:len(gz)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	appendLines(t, h.input, events(200, 250))
	if err := os.Rename(h.input, backupName(h.input, t0.Add(time.Second))); err != nil {
		t.Fatal(err)
	}
	appendLines(t, h.input, events(250, 300))

	h.start(Options{})
	got := h.waitDelivered(300)
	s := h.stop()
	assertLines(t, got, events(0, 300))
	if s.Read.LostFiles != 1 {
		t.Fatalf("lost files %d, want 1 (the torn backup)", s.Read.LostFiles)
	}
	if log := h.logBuf.String(); !strings.Contains(log, "data lost") || !strings.Contains(log, filepath.Base(a)+".gz") {
		t.Fatalf("the torn backup is not named in a data lost line:\n%s", log)
	}
}

func TestASecondAgentOnTheSameStateDirFailsNamingTheFirst(t *testing.T) {
	h := newHarness(t, nil)
	h.start(Options{})
	_, err := New(h.cfg, h.log(), func(c outputs.Config) (outputs.Output, error) { return file.New(file.Options{Path: h.out}, h.log()) }, Options{})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second agent: %v, want ErrLocked naming pid %d", err, os.Getpid())
	}
	h.stop()
	// Once the first is gone the state_dir is free again.
	h.start(Options{})
	h.stop()
}

// closeRecorder records how its output was closed.
type closeRecorder struct {
	outputs.Output
	block    bool // Send waits for ctx
	mu       sync.Mutex
	closed   bool
	deadline time.Time
	canceled time.Time // when a blocked Send saw its ctx done
}

func (c *closeRecorder) Send(ctx context.Context, b *outputs.Batch) error {
	if !c.block {
		return c.Output.Send(ctx, b)
	}
	<-ctx.Done()
	c.mu.Lock()
	c.canceled = time.Now()
	c.mu.Unlock()
	return ctx.Err()
}

func (c *closeRecorder) Close(ctx context.Context) error {
	c.mu.Lock()
	c.closed = true
	c.deadline, _ = ctx.Deadline()
	c.mu.Unlock()
	return c.Output.Close(ctx)
}

func TestShutdownHasOneDeadlineForSendingAndClosing(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ShutdownTimeout = time.Second })
	rec := &closeRecorder{block: true}
	log := h.log()
	a, err := New(h.cfg, log, func(c outputs.Config) (outputs.Output, error) {
		fo, err := file.New(file.Options{Path: h.out}, log)
		rec.Output = fo
		return rec, err
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendLines(t, h.input, events(0, 10))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	time.Sleep(10 * h.cfg.PollInterval) // a Send is blocked
	cancel()
	<-done
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.canceled.IsZero() || !rec.closed {
		t.Fatalf("send canceled at %v, closed %v", rec.canceled, rec.closed)
	}
	// The senders used the whole budget: closing gets what is left, not a
	// fresh shutdown_timeout.
	if left := rec.deadline.Sub(rec.canceled); left > h.cfg.ShutdownTimeout/2 {
		t.Fatalf("Close got a deadline %s after the senders' budget ran out, want the same deadline", left)
	}
}

func TestAStartErrorLeavesNothingOpen(t *testing.T) {
	h := newHarness(t, nil)
	notDir := filepath.Join(h.dir, "plain-file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	appendLines(t, h.input, events(0, 10))
	h.cfg.Inputs = append(h.cfg.Inputs, InputConfig{Path: filepath.Join(notDir, "audit.log"), StartAt: StartBeginning})
	var recs []*closeRecorder
	log := h.log()
	a, err := New(h.cfg, log, func(c outputs.Config) (outputs.Output, error) {
		fo, err := file.New(file.Options{Path: h.out}, log)
		r := &closeRecorder{Output: fo}
		recs = append(recs, r)
		return r, err
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(context.Background()); err == nil || !strings.Contains(err.Error(), notDir) {
		t.Fatalf("Run: %v, want an error naming %s", err, notDir)
	}
	for _, r := range recs {
		if !r.closed {
			t.Fatal("an output was left open")
		}
	}
	if open := openFiles(t, h.dir); len(open) > 0 {
		t.Fatalf("files left open: %v", open)
	}
	// The state_dir lock went with it.
	h.cfg.Inputs = h.cfg.Inputs[:1]
	h.start(Options{})
	h.stop()
}

// openFiles lists this process's open descriptors on files under dir.
func openFiles(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	var out []string
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, dir) {
			out = append(out, target)
		}
	}
	return out
}

func TestACheckpointThatCannotBeWrittenIsCountedAndLoggedSparingly(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CheckpointInterval = 10 * time.Millisecond; c.Batch.MaxEvents = 1 })
	h.start(Options{})
	appendLines(t, h.input, events(0, 1))
	h.waitDelivered(1)
	// The checkpoint's path becomes a non-empty directory: no rename can
	// replace it, as on a full or broken disk.
	cp := filepath.Join(h.cfg.StateDir, CheckpointFile)
	if err := os.Remove(cp); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(cp, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 100; i++ {
		appendLines(t, h.input, events(i, i+1))
		time.Sleep(5 * time.Millisecond)
	}
	h.waitDelivered(100)
	waitFor(t, func() bool { return h.agent.checkpointFails.Load() >= 20 }, "checkpoint failures counted")
	reg := prometheus.NewRegistry()
	reg.MustRegister(h.agent.Collector())
	if v := metricValue(t, reg, "audittail_checkpoint_failures_total", nil); v < 20 {
		t.Fatalf("audittail_checkpoint_failures_total %v, want the failures counted", v)
	}
	os.RemoveAll(cp)
	h.stop()
	if n := strings.Count(h.logBuf.String(), "cannot write checkpoint"); n > 3 {
		t.Fatalf("%d log lines for the failing checkpoint in about a second, want at most one per 10s", n)
	}
}

func TestAJSONObjectThatIsNotAnAuditEventIsCountedAsNotEventAndDroppedOnRequest(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Outputs[0].OnParseError = "drop" })
	lines := []string{event(0), `{}`, `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}`, `{"kind":"Event","stage":"ResponseComplete"}`, event(1)}
	appendLines(t, h.input, lines)
	h.start(Options{})
	got := h.waitDelivered(2)
	time.Sleep(5 * h.cfg.PollInterval)
	s := h.stop()
	assertLines(t, got, []string{event(0), event(1)})
	if n := s.Sent.ParseErrors["not_event"]; n != 3 || s.Sent.ParseDropped != 3 {
		t.Fatalf("not_event %d, dropped %d; want 3 and 3 (%v)", n, s.Sent.ParseDropped, s.Sent.ParseErrors)
	}
}

// syncRecorder is an output whose Sync can fail.
type syncRecorder struct {
	outputs.Output
	fail  atomic.Bool
	syncs atomic.Int64
}

func (s *syncRecorder) Sync() error {
	s.syncs.Add(1)
	if s.fail.Load() {
		return errors.New("disk gone")
	}
	return nil
}

func TestTheCheckpointIsFsyncedOnlyAfterTheOutputsSynced(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CheckpointInterval = 20 * time.Millisecond })
	rec := &syncRecorder{}
	log := h.log()
	a, err := New(h.cfg, log, func(c outputs.Config) (outputs.Output, error) {
		fo, err := file.New(file.Options{Path: h.out}, log)
		rec.Output = fo
		return rec, err
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.run(a)
	appendLines(t, h.input, events(0, 10))
	h.waitDelivered(10)
	synced := filepath.Join(h.cfg.StateDir, CheckpointFile+syncedSuffix)
	waitFor(t, func() bool { b, _ := os.ReadFile(synced); return strings.Contains(string(b), `"offset": 660`) }, "the fsynced checkpoint at the end of the 10 events")
	if rec.syncs.Load() == 0 {
		t.Fatal("the output was never synced")
	}
	// While the output cannot sync, the fsynced checkpoint stays behind.
	rec.fail.Store(true)
	n := rec.syncs.Load()
	appendLines(t, h.input, events(10, 20))
	h.waitDelivered(20)
	waitFor(t, func() bool { return rec.syncs.Load() > n+3 }, "more sync attempts")
	if b, _ := os.ReadFile(synced); !strings.Contains(string(b), `"offset": 660`) {
		t.Fatalf("the fsynced checkpoint moved past what the output could not sync:\n%s", b)
	}
	rec.fail.Store(false)
	h.stop()
}

func eventTS(i int, ts time.Time) string {
	return fmt.Sprintf(`{"kind":"Event","auditID":"id-%06d","stage":"ResponseComplete","stageTimestamp":"%s"}`, i, ts.UTC().Format(time.RFC3339Nano))
}

// assertDataLost fails unless one `data lost` line says from= and to=
// (stageTimestamps) and holds every one of extra.
func assertDataLost(t *testing.T, logs string, from, to time.Time, extra ...string) {
	t.Helper()
	want := append([]string{"from=" + from.Format(time.RFC3339Nano), "to=" + to.Format(time.RFC3339Nano)}, extra...)
	for _, l := range strings.Split(logs, "\n") {
		if !strings.Contains(l, "data lost") {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			return
		}
	}
	t.Fatalf("no data lost line with %q:\n%s", want, logs)
}

// readAll starts the agent on lines, waits for them, and stops it.
func (h *harness) readAll(lines []string) {
	h.t.Helper()
	appendLines(h.t, h.input, lines)
	h.start(Options{})
	h.waitDelivered(len(lines))
	h.stop()
}

func TestLostDataIsReportedAsAWindowBetweenTheEventsAroundTheGap(t *testing.T) {
	for _, gz := range []bool{false, true} {
		name := "a plain backup"
		if gz {
			name = "a gzipped backup counts its uncompressed size"
		}
		t.Run(name, func(t *testing.T) { testLossWindow(t, gz) })
	}
}

func tsEvents(t0 time.Time, from, to int) []string {
	var out []string
	for j := from; j < to; j++ {
		out = append(out, eventTS(j, t0.Add(time.Duration(j)*time.Second)))
	}
	return out
}

func linesSize(lines []string) int64 {
	n := 0
	for _, l := range lines {
		n += len(l) + 1
	}
	return int64(n)
}

func testLossWindow(t *testing.T, gz bool) {
	// The only output refuses everything at first, so the reader waits
	// inside A (its pool is smaller than A) and learns of B, which
	// lumberjack deletes before it is read.
	h := newHarness(t, func(c *Config) { c.MaxInflight = 1; c.Batch.MaxEvents = 1 })
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	ts := func(i int) []string { return tsEvents(t0, i, i+10) }
	gate := make(chan struct{})
	log := h.log()
	a, err := New(h.cfg, log, func(c outputs.Config) (outputs.Output, error) {
		fo, err := file.New(file.Options{Path: h.out}, log)
		return &gatedOutput{Output: fo, gate: gate}, err
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendLines(t, h.input, ts(0)) // A
	h.run(a)
	time.Sleep(5 * h.cfg.PollInterval)
	now := time.Now()
	os.Rename(h.input, backupName(h.input, now))
	appendLines(t, h.input, ts(10)) // B
	b := backupName(h.input, now.Add(time.Second))
	os.Rename(h.input, b)
	if gz {
		gzipFile(t, b)
		b += ".gz"
	}
	appendLines(t, h.input, ts(20))     // C
	time.Sleep(10 * h.cfg.PollInterval) // the reader lists B
	os.Remove(b)
	close(gate)
	got := h.waitDelivered(20)
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.Collector())
	labels := map[string]string{"input": h.input}
	window := metricValue(t, reg, "audittail_lost_window_seconds_total", labels)
	lostBytes := metricValue(t, reg, "audittail_lost_bytes_total", labels)
	lostFiles := metricValue(t, reg, "audittail_lost_files_total", labels)
	h.stop()
	assertLines(t, got, append(ts(0), ts(20)...))
	assertDataLost(t, h.logBuf.String(), t0.Add(9*time.Second), t0.Add(20*time.Second), filepath.Base(b))
	if window != 11 {
		t.Fatalf("audittail_lost_window_seconds_total %v, want 11 (from the 9th to the 20th second)", window)
	}
	if want := linesSize(ts(10)); lostBytes != float64(want) || lostFiles != 1 {
		t.Fatalf("lost %v bytes in %v files, want %d bytes (B uncompressed) in 1", lostBytes, lostFiles, want)
	}
}

func TestBackupsDeletedWhileTheAgentWasDownAreReportedAsAWindow(t *testing.T) {
	// lumberjack with maxbackup 1 and compress, the agent down: A (read to
	// its end) is rotated and compressed, B and C follow and are deleted
	// unread, nobody having listed them; D is the backup left, E is live.
	h := newHarness(t, nil)
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	h.readAll(tsEvents(t0, 0, 10)) // A
	now := time.Now()
	for i := range 4 {
		b := backupName(h.input, now.Add(time.Duration(i)*time.Second))
		if err := os.Rename(h.input, b); err != nil {
			t.Fatal(err)
		}
		gzipFile(t, b)
		if i < 3 {
			os.Remove(b + ".gz")
		}
		appendLines(t, h.input, tsEvents(t0, 10*(i+1), 10*(i+2)))
	}
	h.start(Options{})
	got := h.waitDelivered(30)
	time.Sleep(5 * h.cfg.PollInterval)
	h.stop()
	assertLines(t, got, append(tsEvents(t0, 0, 10), tsEvents(t0, 30, 50)...))
	assertDataLost(t, h.logBuf.String(), t0.Add(9*time.Second), t0.Add(30*time.Second), "window_seconds=21")
}

func TestACompressedBackupCorruptMidwayIsReadUpToTheDamageAndTheRestReportedAsAWindow(t *testing.T) {
	h := newHarness(t, nil)
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	h.readAll(tsEvents(t0, 0, 10)) // A
	// While down: A rotated; B (many events) rotated, compressed, and
	// torn in its middle; C live.
	now := time.Now()
	os.Rename(h.input, backupName(h.input, now))
	appendLines(t, h.input, tsEvents(t0, 10, 5010)) // B
	b := backupName(h.input, now.Add(time.Second))
	os.Rename(h.input, b)
	gzipFile(t, b)
	data, err := os.ReadFile(b + ".gz")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b+".gz", data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	appendLines(t, h.input, tsEvents(t0, 6000, 6010)) // C
	h.start(Options{})
	h.waitDelivered(20)
	time.Sleep(5 * h.cfg.PollInterval)
	s := h.stop()
	got := h.delivered()
	// A, a prefix of B, then C: nothing else, in order.
	all := append(tsEvents(t0, 0, 5010), tsEvents(t0, 6000, 6010)...)
	if len(got) < 20 || !slices.Equal(got[:len(got)-10], all[:len(got)-10]) || !slices.Equal(got[len(got)-10:], tsEvents(t0, 6000, 6010)) {
		t.Fatalf("delivered %d lines, want A, a prefix of B, then C", len(got))
	}
	last := len(got) - 11 // the last event of B read
	assertDataLost(t, h.logBuf.String(), t0.Add(time.Duration(last)*time.Second), t0.Add(6000*time.Second), filepath.Base(b)+".gz")
	if s.Read.LostFiles != 1 {
		t.Fatalf("lost files %d, want 1", s.Read.LostFiles)
	}
}
