package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
