package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/audittail/audittail/parser/auditgen"
)

// The stress tests run the real binary as a subprocess against a real
// lumberjack writer, kill it with SIGKILL at random moments, and check that
// every event arrived, intact, with duplicates bounded by one batch per
// kill.

const stressBatch = 1000

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// agentBinary builds cmd/audittail once per test run.
func agentBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "audittail-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "audittail")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// written records every line the writer produced: auditID -> crc32.
type written struct {
	mu  sync.Mutex
	crc map[string]uint32
}

func (w *written) add(line []byte) {
	id := auditID(line)
	w.mu.Lock()
	w.crc[id] = crc32.ChecksumIEEE(bytes.TrimSuffix(line, []byte("\n")))
	w.mu.Unlock()
}

func auditID(line []byte) string {
	const key = `"auditID":"`
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return ""
	}
	rest := line[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

type stressRun struct {
	t       *testing.T
	dir     string
	input   string
	out     string
	config  string
	cmd     *exec.Cmd
	logs    []string
	kills   int
	written *written
}

func newStressRun(t *testing.T) *stressRun {
	dir := t.TempDir()
	r := &stressRun{
		t: t, dir: dir,
		input:   filepath.Join(dir, "log", "audit.log"),
		out:     filepath.Join(dir, "out", "events.jsonl"),
		config:  filepath.Join(dir, "config.yaml"),
		written: &written{crc: map[string]uint32{}},
	}
	os.MkdirAll(filepath.Dir(r.input), 0o755)
	cfg := fmt.Sprintf(`state_dir: %s
inputs:
  - path: %s
    start_at: beginning
batch: {max_events: %d, max_bytes: 8MiB, max_wait: 100ms}
poll_interval: 50ms
metrics: {listen: "127.0.0.1:0"}
outputs:
  - name: file
    type: file
    path: %s
`, filepath.Join(dir, "state"), r.input, stressBatch, r.out)
	if err := os.WriteFile(r.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *stressRun) start() {
	r.t.Helper()
	logPath := filepath.Join(r.dir, fmt.Sprintf("agent-%d.log", len(r.logs)))
	lf, err := os.Create(logPath)
	if err != nil {
		r.t.Fatal(err)
	}
	r.logs = append(r.logs, logPath)
	r.cmd = exec.Command(agentBinary(r.t), "run", "--config", r.config)
	r.cmd.Stderr = lf
	r.cmd.Stdout = lf
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	lf.Close()
	// The first start records where it begins before it reads anything;
	// the writer starts after that, as kube-apiserver would on a node where
	// the agent was installed first.
	err = waitProgress(10*time.Millisecond, stallLimit, func() (int64, bool) {
		_, err := os.Stat(filepath.Join(r.dir, "state", "checkpoint.json"))
		return 0, err == nil
	})
	if err != nil {
		r.t.Fatalf("agent wrote no checkpoint: %v; log:\n%s", err, r.lastLog())
	}
}

func (r *stressRun) kill() {
	r.t.Helper()
	r.cmd.Process.Signal(syscall.SIGKILL)
	r.cmd.Wait()
	r.kills++
}

func (r *stressRun) terminate() {
	r.t.Helper()
	r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			r.t.Fatalf("agent exited with %v after SIGTERM; log:\n%s", err, r.lastLog())
		}
	case <-time.After(stallLimit): // shutdown_timeout is 30s: this is a hang
		r.cmd.Process.Kill()
		r.t.Fatalf("agent did not exit within %s of SIGTERM; log:\n%s", stallLimit, r.lastLog())
	}
}

func (r *stressRun) lastLog() string {
	data, _ := os.ReadFile(r.logs[len(r.logs)-1])
	return string(data)
}

// killer kills and restarts the agent at random moments until stop closes.
func (r *stressRun) killer(stop <-chan struct{}, minKills int, rng *rand.Rand) {
	for {
		d := time.Duration(300+rng.IntN(1200)) * time.Millisecond
		select {
		case <-stop:
			if r.kills >= minKills {
				return
			}
			time.Sleep(d)
		case <-time.After(d):
		}
		r.kill()
		if rng.IntN(3) == 0 {
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond) // down for a while
		}
		r.start()
	}
}

// waitCaughtUp waits until the output holds at least n lines and has
// stopped growing. It fails only when the output has not grown for
// stallLimit with fewer lines.
func (r *stressRun) waitCaughtUp(n int) {
	r.t.Helper()
	var last int64 = -1
	err := waitProgress(500*time.Millisecond, stallLimit, func() (int64, bool) {
		fi, err := os.Stat(r.out)
		if err != nil {
			return -1, false
		}
		size := fi.Size()
		done := size == last && countLines(r.t, r.out) >= n
		last = size
		return size, done
	})
	if err == nil {
		return
	}
	cp, _ := os.ReadFile(filepath.Join(r.dir, "state", "checkpoint.json"))
	entries, _ := os.ReadDir(filepath.Dir(r.input))
	var names []string
	for _, e := range entries {
		info, _ := e.Info()
		names = append(names, fmt.Sprintf("%s(%d)", e.Name(), info.Size()))
	}
	var logs []byte
	for _, l := range r.logs {
		data, _ := os.ReadFile(l)
		logs = append(logs, data...)
	}
	r.t.Errorf("agent did not catch up (%v): %d of %d lines delivered\ncheckpoint: %s\nfiles: %v\nlogs:\n%s",
		err, countLines(r.t, r.out), n, cp, names, logs)
}

func countLines(t *testing.T, path string) int {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	buf := make([]byte, 1<<20)
	for {
		m, err := f.Read(buf)
		n += bytes.Count(buf[:m], []byte{'\n'})
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// verify checks the output against what was written.
func (r *stressRun) verify() {
	r.t.Helper()
	f, err := os.Open(r.out)
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	seen := make(map[string]int, len(r.written.crc))
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	lines, bad := 0, 0
	for sc.Scan() {
		line := sc.Bytes()
		lines++
		id := auditID(line)
		want, ok := r.written.crc[id]
		if !ok || crc32.ChecksumIEEE(line) != want {
			bad++
			if bad <= 3 {
				r.t.Errorf("line %d is not a line the writer wrote (malformed or torn): %.120q", lines, line)
			}
			continue
		}
		seen[id]++
	}
	if err := sc.Err(); err != nil {
		r.t.Fatal(err)
	}
	missing, dups := 0, 0
	for id := range r.written.crc {
		switch n := seen[id]; {
		case n == 0:
			missing++
			if missing <= 3 {
				r.t.Errorf("event %s was never delivered (written to %s)", id, r.whereIs(id))
			}
		case n > 1:
			dups += n - 1
		}
	}
	r.t.Logf("written %d, delivered lines %d, missing %d, duplicates %d, malformed %d, kills %d",
		len(r.written.crc), lines, missing, dups, bad, r.kills)
	if missing > 0 || bad > 0 {
		var logs []byte
		for _, l := range r.logs {
			data, _ := os.ReadFile(l)
			logs = append(logs, data...)
		}
		r.t.Fatalf("%d events lost, %d malformed lines; agent logs:\n%s", missing, bad, logs)
	}
	if limit := r.kills * stressBatch; dups > limit {
		r.t.Fatalf("%d duplicates after %d kills: more than one batch (%d) per kill", dups, r.kills, stressBatch)
	}
	for _, l := range r.logs {
		data, _ := os.ReadFile(l)
		if bytes.Contains(data, []byte("data lost")) {
			r.t.Fatalf("agent reported lost data:\n%s", data)
		}
	}
}

// whereIs names the file (and offset) that holds an auditID, for failure
// messages.
func (r *stressRun) whereIs(id string) string {
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(r.input), "*"))
	var found []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if strings.HasSuffix(f, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				continue
			}
			data, _ = io.ReadAll(zr)
		}
		if i := bytes.Index(data, []byte(id)); i >= 0 {
			found = append(found, fmt.Sprintf("%s@%d/%d", filepath.Base(f), i, len(data)))
		}
	}
	return strings.Join(found, ", ")
}

// waitBackupsCompressed waits until lumberjack's background compression
// has left no plain backup in dir. Under the race detector gzip is slow: 200
// backups can take most of a minute. The wait lasts while the .gz backups
// grow, and fails after a stall.
func waitBackupsCompressed(dir string) error {
	err := waitProgress(50*time.Millisecond, stallLimit, func() (int64, bool) {
		plain, _ := filepath.Glob(filepath.Join(dir, "audit-*.log"))
		gz, _ := filepath.Glob(filepath.Join(dir, "audit-*.log.gz"))
		var size int64
		for _, f := range gz {
			if fi, err := os.Stat(f); err == nil {
				size += fi.Size()
			}
		}
		return size, len(plain) == 0
	})
	if err != nil {
		plain, _ := filepath.Glob(filepath.Join(dir, "audit-*.log"))
		return fmt.Errorf("lumberjack left %d backups uncompressed: %w", len(plain), err)
	}
	time.Sleep(50 * time.Millisecond) // the last file's close
	return nil
}

// waitCompressedInTest waits, when the test ends, for lumberjack's
// compression to finish, so that the test's temporary directory can be
// removed.
func waitCompressedInTest(t *testing.T, dir string) {
	t.Cleanup(func() {
		if err := waitBackupsCompressed(dir); err != nil {
			t.Error(err)
		}
	})
}

func stressEvents(t *testing.T) int {
	if testing.Short() {
		return 40_000
	}
	return 200_000
}

func TestRotationStressWithKills(t *testing.T) {
	r := newStressRun(t)
	n := stressEvents(t)
	r.start()
	stop := make(chan struct{})
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		r.killer(stop, 5, rand.New(rand.NewPCG(1, 2)))
	}()

	// Written exactly as kube-apiserver writes: one Write per event through
	// lumberjack with maxsize 1 MB and compression.
	w := &lumberjack.Logger{Filename: r.input, MaxSize: 1, MaxBackups: 100_000, Compress: true}
	waitCompressedInTest(t, filepath.Dir(r.input))
	g := auditgen.New(7)
	var buf []byte
	for i := range n {
		buf = g.Append(buf[:0], auditgen.Metadata, time.Now())
		if _, err := w.Write(buf); err != nil {
			t.Fatal(err)
		}
		r.written.add(buf)
		if i%2000 == 1999 {
			time.Sleep(60 * time.Millisecond) // about 20 s in all at 200,000
		}
	}
	w.Close()
	close(stop)
	<-killerDone
	r.waitCaughtUp(n)
	r.terminate()
	r.verify()
}

func TestCopytruncateStressWithKills(t *testing.T) {
	r := newStressRun(t)
	n := stressEvents(t) / 2
	r.start()
	stop := make(chan struct{})
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		r.killer(stop, 5, rand.New(rand.NewPCG(3, 4)))
	}()

	// A writer whose rotation is copytruncate: copy the live file to a
	// backup, truncate it in place, keep writing to the same descriptor.
	f, err := os.OpenFile(r.input, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	g := auditgen.New(11)
	var buf []byte
	size := 0
	last := time.Time{}
	for i := range n {
		buf = g.Append(buf[:0], auditgen.Metadata, time.Now())
		if size+len(buf) > 1<<20 {
			ts := time.Now().UTC()
			if !ts.After(last) {
				ts = last.Add(time.Millisecond)
			}
			last = ts
			data, err := os.ReadFile(r.input)
			if err != nil {
				t.Fatal(err)
			}
			name := filepath.Join(filepath.Dir(r.input), "audit-"+ts.Format("2006-01-02T15-04-05.000")+".log")
			if err := os.WriteFile(name, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(0); err != nil {
				t.Fatal(err)
			}
			size = 0
		}
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
		size += len(buf)
		r.written.add(buf)
		if i%2000 == 1999 {
			time.Sleep(60 * time.Millisecond)
		}
	}
	f.Close()
	close(stop)
	<-killerDone
	r.waitCaughtUp(n)
	r.terminate()
	r.verify()
}

func TestRotationsAndCompressionWhileTheAgentIsDown(t *testing.T) {
	r := newStressRun(t)
	w := &lumberjack.Logger{Filename: r.input, MaxSize: 1, MaxBackups: 1000, Compress: true}
	waitCompressedInTest(t, filepath.Dir(r.input))
	g := auditgen.New(13)
	var buf []byte
	write := func(events int) {
		for range events {
			buf = g.Append(buf[:0], auditgen.Metadata, time.Now())
			if _, err := w.Write(buf); err != nil {
				t.Fatal(err)
			}
			r.written.add(buf)
		}
	}
	r.start()
	write(700) // well inside the first file
	time.Sleep(time.Second)
	r.terminate()
	// Down: two rotations (each followed by lumberjack's background
	// compression), then more lines in the new live file.
	write(2 * 1100)
	write(300)
	w.Close()
	if err := waitBackupsCompressed(filepath.Dir(r.input)); err != nil {
		t.Fatal(err)
	}
	gz, _ := filepath.Glob(filepath.Join(filepath.Dir(r.input), "*.gz"))
	if len(gz) < 2 {
		t.Fatalf("expected at least 2 compressed backups, got %v", gz)
	}
	r.start()
	r.waitCaughtUp(len(r.written.crc))
	r.terminate()
	r.verify()
	if !strings.Contains(r.lastLog(), "resuming") {
		t.Fatalf("the agent did not resume from its checkpoint:\n%s", r.lastLog())
	}
}
