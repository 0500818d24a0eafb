package agent

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/file"
	srcfile "github.com/audittail/audittail/source/file"
)

// harness runs an Agent in-process with a file output and gives the test
// the input path, the delivered lines and the counters.
type harness struct {
	t      *testing.T
	dir    string
	input  string
	out    string
	cfg    *Config
	logBuf *syncBuffer

	agent  *Agent
	cancel context.CancelFunc
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{t: t, dir: dir, input: filepath.Join(dir, "log", "audit.log"), out: filepath.Join(dir, "out", "events.jsonl"), logBuf: &syncBuffer{}}
	h.cfg = &Config{
		StateDir:     filepath.Join(dir, "state"),
		Inputs:       []InputConfig{{Path: h.input, StartAt: StartBeginning}},
		Outputs:      []outputs.Config{{Name: "test", Type: "file"}},
		Batch:        BatchConfig{MaxEvents: 100, MaxWait: 20 * time.Millisecond},
		PollInterval: 20 * time.Millisecond,
	}
	if mod != nil {
		mod(h.cfg)
	}
	h.cfg.Defaults()
	if err := h.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(h.input), 0o755); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) log() *slog.Logger {
	return slog.New(slog.NewTextHandler(h.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// start runs the agent until stop.
func (h *harness) start(opts Options) {
	h.t.Helper()
	log := h.log()
	a, err := New(h.cfg, log, func(c outputs.Config) (outputs.Output, error) { return file.New(file.Options{Path: h.out}, log) }, opts)
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

// run runs a, which the test built, until stop.
func (h *harness) run(a *Agent) {
	ctx, cancel := context.WithCancel(context.Background())
	h.agent, h.cancel, h.done = a, cancel, make(chan error, 1)
	go func() { h.done <- a.Run(ctx) }()
}

// stop ends the agent the way SIGTERM does and returns its summary.
func (h *harness) stop() Summary {
	h.t.Helper()
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Fatalf("agent: %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Fatal("agent did not stop within 10s")
	}
	return h.agent.Summaries()[0]
}

func (h *harness) delivered() []string {
	h.t.Helper()
	return readLines(h.t, h.out)
}

// stallTimeout is how long a wait for delivery tolerates no progress.
const stallTimeout = 60 * time.Second

// waitDelivered waits until n lines were delivered, as long as lines keep
// arriving: it fails only after stallTimeout without progress.
func (h *harness) waitDelivered(n int) []string {
	h.t.Helper()
	return waitLines(h.t, h.out, n, h.logBuf)
}

// waitLines waits until path holds n lines; see waitDelivered.
func waitLines(t *testing.T, path string, n int, log *syncBuffer) []string {
	t.Helper()
	last, since := -1, time.Now()
	for {
		got := readLines(t, path)
		if len(got) >= n {
			return got
		}
		if len(got) != last {
			last, since = len(got), time.Now()
		}
		if time.Since(since) > stallTimeout {
			t.Fatalf("%s: %d lines, want %d, and none came for %s; agent log:\n%s", path, len(got), n, stallTimeout, log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(data), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func event(i int) string {
	return fmt.Sprintf(`{"kind":"Event","auditID":"id-%06d","stage":"ResponseComplete"}`, i)
}

func events(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, event(i))
	}
	return out
}

func appendLines(t *testing.T, path string, lines []string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		if _, err := f.WriteString(l + "\n"); err != nil {
			t.Fatal(err)
		}
	}
}

func backupName(input string, ts time.Time) string {
	ext := filepath.Ext(input)
	return strings.TrimSuffix(input, ext) + "-" + ts.UTC().Format("2006-01-02T15-04-05.000") + ext
}

func gzipFile(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	if err := os.WriteFile(path+".gz", buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// summarizeIDs shows lines made by event as runs of ids: 0-99,300-399.
func summarizeIDs(lines []string) string {
	var b strings.Builder
	prev, start := -2, -2
	flush := func() {
		if start >= 0 {
			fmt.Fprintf(&b, "%d-%d,", start, prev)
		}
	}
	for _, l := range lines {
		var n int
		if _, err := fmt.Sscanf(l, `{"kind":"Event","auditID":"id-%06d"`, &n); err != nil {
			n = -1
		}
		if n != prev+1 {
			flush()
			start = n
		}
		prev = n
	}
	flush()
	return b.String()
}

// storedCursor reads the checkpointed file position of output in input.
func storedCursor(t *testing.T, stateDir, output, input string) (srcfile.Cursor, bool) {
	t.Helper()
	st, err := OpenStore(stateDir, false, checkFilePosition)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	raw := st.Position(output, input)
	if raw == nil {
		return srcfile.Cursor{}, false
	}
	c, err := srcfile.DecodePosition(raw)
	if err != nil {
		t.Fatal(err)
	}
	return c, true
}

func assertLines(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d\ngot: %s", len(got), len(want), summarizeIDs(got))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("line %d: got %q, want %q", i, got[i], want[i])
		}
	}
}

func TestDeliversAPartialLineOnlyOnceItsNewlineArrives(t *testing.T) {
	h := newHarness(t, nil)
	appendLines(t, h.input, events(0, 3))
	h.start(Options{})
	h.waitDelivered(3)

	f, err := os.OpenFile(h.input, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	half := event(3)[:20]
	f.WriteString(half)
	time.Sleep(10 * h.cfg.PollInterval)
	if got := h.delivered(); len(got) != 3 {
		t.Fatalf("a line without its newline was delivered: %q", got[len(got)-1])
	}
	f.WriteString(event(3)[20:] + "\n")
	assertLines(t, h.waitDelivered(4), events(0, 4))
	h.stop()
}

func TestSkipsALineOverMaxLineBytesWholeAndCountsIt(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxLineBytes = 4096 })
	huge := `{"kind":"Event","auditID":"huge","requestObject":"` + strings.Repeat("x", 50_000) + `"}`
	appendLines(t, h.input, []string{event(0), huge, event(1), strings.Repeat("y", 4097), event(2)})
	h.start(Options{})
	h.waitDelivered(3)
	time.Sleep(5 * h.cfg.PollInterval)
	s := h.stop()
	assertLines(t, h.delivered(), []string{event(0), event(1), event(2)})
	if s.Read.OversizeLines != 2 {
		t.Fatalf("oversize lines counted: %d, want 2", s.Read.OversizeLines)
	}
	if !strings.Contains(h.logBuf.String(), "skipping a line longer than max_line_bytes") {
		t.Fatalf("no log line for the oversize line:\n%s", h.logBuf.String())
	}
}

func TestWaitsForAMissingDirectoryAndFileThenReadsFromTheStart(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Inputs[0].StartAt = StartEnd })
	os.RemoveAll(filepath.Dir(h.input))
	h.start(Options{})
	time.Sleep(5 * h.cfg.PollInterval)
	if err := os.MkdirAll(filepath.Dir(h.input), 0o755); err != nil {
		t.Fatal(err)
	}
	appendLines(t, h.input, events(0, 50))
	assertLines(t, h.waitDelivered(50), events(0, 50))
	h.stop()
}

func TestStartAtEndSkipsWhatTheLiveFileHolds(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Inputs[0].StartAt = StartEnd })
	appendLines(t, h.input, events(0, 10))
	h.start(Options{})
	time.Sleep(5 * h.cfg.PollInterval)
	appendLines(t, h.input, events(10, 20))
	assertLines(t, h.waitDelivered(10), events(10, 20))
	h.stop()
}

func TestFinishesARenamedFileBeforeTheNewOne(t *testing.T) {
	h := newHarness(t, nil)
	h.start(Options{})
	old, err := os.OpenFile(h.input, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range events(0, 100) {
		old.WriteString(l + "\n")
	}
	h.waitDelivered(1)
	// Rotate by rename while the writer still has lines to flush into the
	// old descriptor (a writer mid-rotation); the agent must keep reading it.
	if err := os.Rename(h.input, backupName(h.input, time.Now())); err != nil {
		t.Fatal(err)
	}
	for _, l := range events(100, 200) {
		old.WriteString(l + "\n")
	}
	old.Close()
	appendLines(t, h.input, events(200, 300))
	assertLines(t, h.waitDelivered(300), events(0, 300))
	s := h.stop()
	if s.Read.Rotations != 1 {
		t.Fatalf("rotations: %d, want 1", s.Read.Rotations)
	}
}

func TestCopytruncateRestartsAtZeroAndReadsTheRestFromTheCopy(t *testing.T) {
	h := newHarness(t, nil)
	appendLines(t, h.input, events(0, 100))
	h.start(Options{})
	h.waitDelivered(100)
	// The writer adds lines, then logrotate-style copytruncate runs before
	// the agent reads them: the copy holds the tail.
	appendLines(t, h.input, events(100, 150))
	data, err := os.ReadFile(h.input)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(backupName(h.input, time.Now()), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(h.input, 0); err != nil {
		t.Fatal(err)
	}
	appendLines(t, h.input, events(150, 160))
	got := h.waitDelivered(160)
	s := h.stop()
	assertLines(t, got, events(0, 160))
	if s.Read.Truncations < 1 {
		t.Fatalf("truncations: %d, want at least 1", s.Read.Truncations)
	}
}

func TestResumesInsideAGzippedBackupThenReadsNewerFiles(t *testing.T) {
	h := newHarness(t, nil)
	appendLines(t, h.input, events(0, 100))
	h.start(Options{})
	h.waitDelivered(100)
	h.stop()

	// While the agent is down: more lines, two rotations, a compression.
	appendLines(t, h.input, events(100, 150))
	t0 := time.Now().Add(time.Second)
	b1 := backupName(h.input, t0)
	os.Rename(h.input, b1)
	appendLines(t, h.input, events(150, 200))
	b2 := backupName(h.input, t0.Add(time.Second))
	os.Rename(h.input, b2)
	appendLines(t, h.input, events(200, 250))
	gzipFile(t, b1)

	h.start(Options{})
	h.waitDelivered(250)
	time.Sleep(5 * h.cfg.PollInterval)
	h.stop()
	assertLines(t, h.delivered(), events(0, 250))
}

func TestReadsABackupAndItsGzipTwinOnce(t *testing.T) {
	h := newHarness(t, nil)
	appendLines(t, h.input, events(0, 10))
	h.start(Options{})
	h.waitDelivered(10)
	h.stop()
	appendLines(t, h.input, events(10, 20))
	b1 := backupName(h.input, time.Now().Add(time.Second))
	os.Rename(h.input, b1)
	// lumberjack mid-compression: the plain backup and a complete .gz.
	data, _ := os.ReadFile(b1)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	os.WriteFile(b1+".gz", buf.Bytes(), 0o644)
	appendLines(t, h.input, events(20, 30))
	h.start(Options{})
	h.waitDelivered(30)
	time.Sleep(5 * h.cfg.PollInterval)
	h.stop()
	assertLines(t, h.delivered(), events(0, 30))
}

func TestCountsAndNamesBackupsDeletedBeforeTheyWereRead(t *testing.T) {
	h := newHarness(t, nil)
	appendLines(t, h.input, events(0, 100))
	h.start(Options{})
	h.waitDelivered(100)
	h.stop()

	// While the agent is down the writer rotates three times and the
	// oldest two backups (the checkpointed file and the next) are deleted.
	t0 := time.Now().Add(time.Second)
	appendLines(t, h.input, events(100, 150)) // unread tail of the checkpointed file
	var backups []string
	for i := range 3 {
		b := backupName(h.input, t0.Add(time.Duration(i)*time.Second))
		os.Rename(h.input, b)
		backups = append(backups, b)
		appendLines(t, h.input, events(150+50*i, 200+50*i))
	}
	os.Remove(backups[0])
	os.Remove(backups[1])

	h.start(Options{})
	want := append(events(0, 100), events(200, 300)...)
	got := h.waitDelivered(len(want))
	time.Sleep(5 * h.cfg.PollInterval)
	s := h.stop()
	assertLines(t, got, want)
	if s.Read.LostFiles < 1 {
		t.Fatalf("lost files: %d, want at least 1 (the checkpointed file)", s.Read.LostFiles)
	}
	if !strings.Contains(h.logBuf.String(), "data lost") || !strings.Contains(h.logBuf.String(), filepath.Base(h.input)) {
		t.Fatalf("loss not logged with the file name:\n%s", h.logBuf.String())
	}
}

func TestCountsQueuedBackupsDeletedWhileTheOutputWasDown(t *testing.T) {
	// An output that refuses everything until released: the agent lags,
	// learns of the backups, and lumberjack deletes two before they are read.
	h := newHarness(t, func(c *Config) { c.MaxInflight = 1; c.Batch.MaxEvents = 10 })
	gate := make(chan struct{})
	log := h.log()
	a, err := New(h.cfg, log, func(c outputs.Config) (outputs.Output, error) {
		fo, err := file.New(file.Options{Path: h.out}, log)
		return &gatedOutput{Output: fo, gate: gate}, err
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendLines(t, h.input, events(0, 100))
	t0 := time.Now().Add(time.Second)
	var backups []string
	for i := range 3 {
		b := backupName(h.input, t0.Add(time.Duration(i)*time.Second))
		backups = append(backups, b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	time.Sleep(5 * h.cfg.PollInterval) // stuck on the first batch
	os.Rename(h.input, backups[0])
	appendLines(t, h.input, events(100, 200))
	os.Rename(h.input, backups[1])
	appendLines(t, h.input, events(200, 300))
	os.Rename(h.input, backups[2])
	appendLines(t, h.input, events(300, 400))
	time.Sleep(10 * h.cfg.PollInterval) // the agent lists the new backups
	st1, _ := os.Stat(backups[1])
	st2, _ := os.Stat(backups[2])
	os.Remove(backups[1])
	os.Remove(backups[2])
	close(gate)
	h.agent, h.cancel, h.done = a, cancel, done
	got := h.waitDelivered(200)
	time.Sleep(5 * h.cfg.PollInterval)
	s := h.stop()
	assertLines(t, got, append(events(0, 100), events(300, 400)...))
	if s.Read.LostFiles != 2 || s.Read.LostBytes != st1.Size()+st2.Size() {
		t.Fatalf("lost: %d files %d bytes, want 2 files %d bytes\n%s", s.Read.LostFiles, s.Read.LostBytes, st1.Size()+st2.Size(), h.logBuf.String())
	}
	for _, b := range backups[1:] {
		if !strings.Contains(h.logBuf.String(), b) {
			t.Fatalf("lost backup %s not named in the log:\n%s", b, h.logBuf.String())
		}
	}
}

// gatedOutput fails every Send until gate is closed.
type gatedOutput struct {
	outputs.Output
	gate chan struct{}
}

func (g *gatedOutput) Send(ctx context.Context, b *outputs.Batch) error {
	select {
	case <-g.gate:
		return g.Output.Send(ctx, b)
	default:
		return fmt.Errorf("receiver down")
	}
}

func TestRefusesToStartOnACorruptCheckpoint(t *testing.T) {
	h := newHarness(t, nil)
	os.MkdirAll(h.cfg.StateDir, 0o700)
	path := filepath.Join(h.cfg.StateDir, CheckpointFile)
	os.WriteFile(path, []byte(`{"version":1,"cursors":{"test":{"/x":{"offset":`), 0o600)
	_, err := New(h.cfg, h.log(), func(c outputs.Config) (outputs.Output, error) { return file.New(file.Options{Path: h.out}, nil) }, Options{})
	if err == nil {
		t.Fatal("agent started on a corrupt checkpoint")
	}
	for _, want := range []string{path, "--reset-checkpoint"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not mention %q", err, want)
		}
	}
	// The documented recovery works and keeps the old file for inspection.
	appendLines(t, h.input, events(0, 5))
	h.start(Options{ResetCheckpoint: true})
	assertLines(t, h.waitDelivered(5), events(0, 5))
	h.stop()
	aside, _ := filepath.Glob(path + ".reset-*")
	if len(aside) != 1 {
		t.Fatalf("corrupt checkpoint not kept aside: %v", aside)
	}
}

func TestIgnoresAndRemovesATornTemporaryCheckpoint(t *testing.T) {
	h := newHarness(t, nil)
	appendLines(t, h.input, events(0, 10))
	h.start(Options{})
	h.waitDelivered(10)
	h.stop()
	// A crash in the middle of a checkpoint write leaves a torn temp file.
	torn := filepath.Join(h.cfg.StateDir, CheckpointFile+".tmp-12345")
	os.WriteFile(torn, []byte(`{"version":1,"cur`), 0o600)
	appendLines(t, h.input, events(10, 20))
	h.start(Options{})
	h.waitDelivered(20)
	h.stop()
	assertLines(t, h.delivered(), events(0, 20))
	if _, err := os.Stat(torn); !os.IsNotExist(err) {
		t.Fatalf("torn temp checkpoint still there: %v", err)
	}
	fi, err := os.Stat(filepath.Join(h.cfg.StateDir, CheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("checkpoint mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestCheckpointNeverPassesWhatTheOutputDidNotAcknowledge(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Batch.MaxEvents = 10 })
	gate := make(chan struct{})
	log := h.log()
	a, err := New(h.cfg, log, func(c outputs.Config) (outputs.Output, error) {
		fo, err := file.New(file.Options{Path: h.out}, log)
		return &gatedOutput{Output: fo, gate: gate}, err
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendLines(t, h.input, events(0, 100))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	time.Sleep(10 * h.cfg.PollInterval)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c, ok := storedCursor(t, h.cfg.StateDir, "test", h.input)
	if !ok || c.Offset != 0 {
		t.Fatalf("checkpoint moved to %d without an acknowledgement", c.Offset)
	}
	// Delivery resumes from the start once the output accepts.
	h.start(Options{})
	assertLines(t, h.waitDelivered(100), events(0, 100))
	h.stop()
}

func TestReadsRealAuditLogsLineByLine(t *testing.T) {
	src := "../testdata/real/liggitt__audit2rbac__testdata__demo.log"
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("real test data (testdata/real): %v", err)
	}
	var want []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			want = append(want, sc.Text())
		}
	}
	h := newHarness(t, nil)
	if err := os.WriteFile(h.input, data, 0o644); err != nil {
		t.Fatal(err)
	}
	h.start(Options{})
	assertLines(t, h.waitDelivered(len(want)), want)
	h.stop()
}

var _ io.Writer = (*syncBuffer)(nil)

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func TestMetricsMoveAndReadinessFollowsTheOutput(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Batch.MaxEvents = 10
		c.Metrics.UnreadyAfter = 50 * time.Millisecond
	})
	down := &switchOutput{}
	log := h.log()
	a, err := New(h.cfg, log, func(c outputs.Config) (outputs.Output, error) {
		fo, err := file.New(file.Options{Path: h.out}, log)
		down.Output = fo
		return down, err
	}, Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.Collector())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go a.Serve(ctx, ln, reg)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	h.agent, h.cancel, h.done = a, cancel, done
	base := "http://" + ln.Addr().String()

	appendLines(t, h.input, events(0, 50))
	h.waitDelivered(50)
	if got := scrape(t, base+"/healthz"); !strings.HasPrefix(got, "200") {
		t.Fatalf("/healthz: %s", got)
	}
	waitFor(t, func() bool { return strings.HasPrefix(scrape(t, base+"/readyz"), "200") }, "ready")
	out := map[string]string{"output": "test"}
	if v := metricValue(t, reg, "audittail_events_total", map[string]string{"output": "test", "result": "delivered"}); v != 50 {
		t.Fatalf("events delivered: %v, want 50", v)
	}
	if v := metricValue(t, reg, "audittail_batches_total", map[string]string{"output": "test", "result": "ok"}); v < 5 {
		t.Fatalf("batches: %v, want at least 5", v)
	}
	read := metricValue(t, reg, "audittail_read_bytes_total", nil)
	if read == 0 {
		t.Fatal("read bytes did not move")
	}
	if v := metricValue(t, reg, "audittail_checkpoint_lag_bytes", out); v != 0 {
		t.Fatalf("lag after delivering everything: %v, want 0", v)
	}

	// The output goes away: readiness drops, lag grows.
	down.down.Store(true)
	appendLines(t, h.input, events(50, 100))
	waitFor(t, func() bool { return strings.HasPrefix(scrape(t, base+"/readyz"), "503") }, "unready while the output is down")
	if v := metricValue(t, reg, "audittail_checkpoint_lag_bytes", out); v == 0 {
		t.Fatal("lag did not grow while the output was down")
	}
	if v := metricValue(t, reg, "audittail_retries_total", out); v == 0 {
		t.Fatal("no retries counted while the output was down")
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`# HELP audittail_build_info Build information.
# TYPE audittail_build_info gauge
audittail_build_info{goversion="`+runtime.Version()+`",version="test"} 1
# HELP audittail_ready 1 when /readyz reports ready.
# TYPE audittail_ready gauge
audittail_ready 0
`), "audittail_build_info", "audittail_ready"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(scrape(t, base+"/metrics"), "audittail_ready 0") {
		t.Fatal("/metrics does not show audittail_ready 0")
	}

	// It comes back: everything is delivered and readiness returns.
	down.down.Store(false)
	assertLines(t, h.waitDelivered(100), events(0, 100))
	waitFor(t, func() bool { return strings.HasPrefix(scrape(t, base+"/readyz"), "200") }, "ready again")
	if v := metricValue(t, reg, "audittail_read_bytes_total", nil); v <= read {
		t.Fatal("read bytes did not move")
	}
	h.stop()
}

// switchOutput fails every Send while down is set.
type switchOutput struct {
	outputs.Output
	down atomic.Bool
}

func (s *switchOutput) Send(ctx context.Context, b *outputs.Batch) error {
	if s.down.Load() {
		return fmt.Errorf("receiver down")
	}
	return s.Output.Send(ctx, b)
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(stallTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for: %s", what)
}

func TestInvalidLinesAreCountedAndForwardedOrDropped(t *testing.T) {
	real := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","verb":"get"}`
	lines := []string{
		real,
		`{"kind":"Event","auditID":"cut`, // truncated
		`2017-09-11T19:55:05.123Z AUDIT: id="x" stage="y"`, // legacy format
		`[1,2,3]`, // not an object
		real,
	}
	for _, mode := range []string{"forward", "drop"} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.Outputs[0].OnParseError = mode })
			appendLines(t, h.input, lines)
			h.start(Options{})
			want := lines
			if mode == "drop" {
				want = []string{real, real}
			}
			h.waitDelivered(len(want))
			time.Sleep(5 * h.cfg.PollInterval)
			s := h.stop()
			assertLines(t, h.delivered(), want)
			wantErrs := map[string]int64{"truncated": 1, "legacy_format": 1, "not_object": 1}
			for r, n := range wantErrs {
				if s.Sent.ParseErrors[r] != n {
					t.Errorf("parse errors %s: %d, want %d (all: %v)", r, s.Sent.ParseErrors[r], n, s.Sent.ParseErrors)
				}
			}
			if !strings.Contains(h.logBuf.String(), "--audit-log-format=json") {
				t.Errorf("the legacy-format line's log does not tell the operator what to change:\n%s", h.logBuf.String())
			}
		})
	}
}

// rejectingOutput rejects, permanently, every line whose text contains
// "reject", and the whole batch if a line contains "poison".
type rejectingOutput struct{ outputs.Output }

func (r *rejectingOutput) Send(ctx context.Context, b *outputs.Batch) error {
	var bad []int
	for i := range b.Len() {
		if strings.Contains(string(b.Line(i)), "poison") {
			return outputs.Permanent(fmt.Errorf("400 bad request"))
		}
		if strings.Contains(string(b.Line(i)), "reject") {
			bad = append(bad, i)
		}
	}
	if err := r.Output.Send(ctx, b); err != nil {
		return err
	}
	if bad != nil {
		return &outputs.RejectedError{Lines: bad, Err: fmt.Errorf("record too large")}
	}
	return nil
}

func TestPermanentRejectionsGoToTheDeadLetterFile(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Batch.MaxEvents = 3 })
	log := h.log()
	a, err := New(h.cfg, log, func(c outputs.Config) (outputs.Output, error) {
		fo, err := file.New(file.Options{Path: h.out}, log)
		return &rejectingOutput{fo}, err
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{event(0), `{"auditID":"reject-me"}`, event(1), `{"auditID":"poison"}`, event(2), event(3), event(4), event(5), event(6)}
	appendLines(t, h.input, lines)
	h.run(a)
	// Batch 1 {0, reject-me, 1}: reject-me dead-lettered, the rest
	// delivered (the file output wrote all three before the sink reported
	// the rejection). Batch 2 {poison, 2, 3}: all dead-lettered.
	h.waitDelivered(6)
	time.Sleep(5 * h.cfg.PollInterval)
	s := h.stop()
	if s.Sent.DeadLettered != 4 {
		t.Fatalf("dead-lettered %d events, want 4", s.Sent.DeadLettered)
	}
	data, err := os.ReadFile(h.cfg.Outputs[0].DeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var rec struct {
			Output, Input, Error string
			Event                struct{ AuditID string }
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("dead-letter line %q: %v", l, err)
		}
		if rec.Output != "test" || rec.Input != h.input || rec.Error == "" {
			t.Fatalf("dead-letter record lacks output, input or error: %q", l)
		}
		ids = append(ids, rec.Event.AuditID)
	}
	want := []string{"reject-me", "poison", "id-000002", "id-000003"}
	if strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Fatalf("dead-lettered %v, want %v", ids, want)
	}
	// The checkpoint moved past the rejected events: a restart sends nothing again.
	c, _ := storedCursor(t, h.cfg.StateDir, "test", h.input)
	fi, _ := os.Stat(h.input)
	if c.Offset != fi.Size() {
		t.Fatalf("checkpoint at %d, want the end of the file %d", c.Offset, fi.Size())
	}
}

// batchRecorder records the size of every batch it is sent.
type batchRecorder struct {
	outputs.Output
	mu    sync.Mutex
	sizes [][2]int // events, bytes
	at    []time.Time
}

func (r *batchRecorder) Send(ctx context.Context, b *outputs.Batch) error {
	r.mu.Lock()
	r.sizes = append(r.sizes, [2]int{b.Len(), b.Size()})
	r.at = append(r.at, time.Now())
	r.mu.Unlock()
	return r.Output.Send(ctx, b)
}

func TestBatchesCloseOnMaxEventsMaxBytesOrMaxWait(t *testing.T) {
	run := func(t *testing.T, mod func(*Config), lines []string) (*batchRecorder, *harness) {
		h := newHarness(t, mod)
		rec := &batchRecorder{}
		log := h.log()
		a, err := New(h.cfg, log, func(c outputs.Config) (outputs.Output, error) {
			fo, err := file.New(file.Options{Path: h.out}, log)
			rec.Output = fo
			return rec, err
		}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		appendLines(t, h.input, lines)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		h.agent, h.cancel, h.done = a, cancel, done
		assertLines(t, h.waitDelivered(len(lines)), lines)
		h.stop()
		return rec, h
	}
	t.Run("max_events", func(t *testing.T) {
		rec, _ := run(t, func(c *Config) { c.Batch.MaxEvents = 7; c.Batch.MaxWait = 200 * time.Millisecond }, events(0, 50))
		for i, s := range rec.sizes[:len(rec.sizes)-1] {
			if s[0] != 7 {
				t.Fatalf("batch %d has %d events, want 7 (max_events)", i, s[0])
			}
		}
	})
	t.Run("max_bytes", func(t *testing.T) {
		rec, _ := run(t, func(c *Config) { c.Batch.MaxBytes = 1024; c.Batch.MaxWait = 200 * time.Millisecond }, events(0, 100))
		for i, s := range rec.sizes {
			if s[1] > 1024 {
				t.Fatalf("batch %d has %d bytes, over max_bytes 1024", i, s[1])
			}
			if i < len(rec.sizes)-1 && s[1]+len(event(0))+1 <= 1024 {
				t.Fatalf("batch %d closed at %d bytes although another line fit", i, s[1])
			}
		}
	})
	t.Run("max_wait", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.Batch.MaxEvents = 1000; c.Batch.MaxWait = 300 * time.Millisecond })
		rec := &batchRecorder{}
		log := h.log()
		a, _ := New(h.cfg, log, func(c outputs.Config) (outputs.Output, error) {
			fo, err := file.New(file.Options{Path: h.out}, log)
			rec.Output = fo
			return rec, err
		}, Options{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		h.agent, h.cancel, h.done = a, cancel, done
		time.Sleep(5 * h.cfg.PollInterval)
		start := time.Now()
		appendLines(t, h.input, events(0, 3))
		h.waitDelivered(3)
		waited := time.Since(start)
		h.stop()
		if len(rec.sizes) != 1 || rec.sizes[0][0] != 3 {
			t.Fatalf("batches %v, want one batch of 3 sent when max_wait passed", rec.sizes)
		}
		if waited < 250*time.Millisecond {
			t.Fatalf("a batch of 3 (max_events 1000) was sent after %s, before max_wait 300ms", waited)
		}
	})
}

func TestADownOutputHoldsBackOnlyItself(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Batch.MaxEvents = 10
		c.MaxInflight = 2
		c.Outputs = []outputs.Config{{Name: "up", Type: "file"}, {Name: "down", Type: "file"}}
	})
	downPath := filepath.Join(h.dir, "out", "down.jsonl")
	down := &switchOutput{}
	down.down.Store(true)
	log := h.log()
	a, err := New(h.cfg, log, func(c outputs.Config) (outputs.Output, error) {
		if c.Name == "up" {
			return file.New(file.Options{Path: h.out}, log)
		}
		fo, err := file.New(file.Options{Path: downPath}, log)
		down.Output = fo
		return down, err
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.run(a)
	appendLines(t, h.input, events(0, 500))
	// The healthy output gets everything while the other is down; the down
	// one's reader stops after max_inflight batches (bounded memory).
	assertLines(t, h.waitDelivered(500), events(0, 500))
	var downRead int64
	for _, s := range a.Summaries() {
		if s.Output == "down" {
			downRead = s.Read.Lines
		}
	}
	if downRead > 3*10 {
		t.Fatalf("the down output's stream took %d lines, want at most max_inflight+1 batches (30)", downRead)
	}
	down.down.Store(false)
	waitFor(t, func() bool {
		data, _ := os.ReadFile(downPath)
		return bytes.Count(data, []byte("\n")) >= 500
	}, "the recovered output catching up")
	h.stop()
	data, _ := os.ReadFile(downPath)
	if got := strings.Split(strings.TrimSpace(string(data)), "\n"); strings.Join(got, "\n") != strings.Join(events(0, 500), "\n") {
		t.Fatalf("the recovered output got %d lines, not the 500 in order", len(got))
	}
}
