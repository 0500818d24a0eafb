package kafkatest

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// stall is how long the end-to-end wait may see no progress.
const stall = 90 * time.Second

func buildAgent(t *testing.T) string {
	t.Helper()
	root, _ := filepath.Abs("../../../..")
	bin := filepath.Join(t.TempDir(), "audittail")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/audittail")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build in %s: %v\n%s", root, err, out)
	}
	return bin
}

// writtenKeys returns the auditID/stage of every event in the log's files.
func writtenKeys(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	out := map[string]bool{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = fh
		if strings.HasSuffix(f, ".gz") {
			zr, err := gzip.NewReader(fh)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var ev struct{ AuditID, Stage string }
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				out[ev.AuditID+"/"+ev.Stage] = true
			}
		}
		fh.Close()
	}
	return out
}

func TestEndToEndThroughTheBinaryWithAKillMidRun(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 20_000
	}
	bin := buildAgent(t)
	c := newCluster(t)
	brokers := c.ListenAddrs()
	createTopic(t, brokers, "audit", 3)

	// Consume in the background: auditID/stage -> times read.
	var mu sync.Mutex
	got := map[string]int{}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("audit"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				rec := decode(t, r)
				mu.Lock()
				got[rec.id]++
				mu.Unlock()
			})
		}
	}()
	defer func() { cancel(); <-done; cl.Close() }()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }

	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, `state_dir: %s
inputs:
  - path: %s
    start_at: beginning
batch: {max_events: 1000, max_wait: 100ms}
metrics: {listen: "off"}
outputs:
  - type: kafka
    brokers: [%s]
    topic: audit
`, filepath.Join(dir, "state"), filepath.Join(logDir, "audit.log"), strings.Join(brokers, ", ")), 0o600)
	start := func(i int) *exec.Cmd {
		log, _ := os.Create(filepath.Join(dir, fmt.Sprintf("agent-%d.log", i)))
		cmd := exec.Command(bin, "run", "--config", cfg)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	logs := func() string {
		var b strings.Builder
		for i := range 2 {
			data, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("agent-%d.log", i)))
			fmt.Fprintf(&b, "--- agent %d\n%s", i, data)
		}
		return b.String()
	}
	agent := start(0)
	gen := exec.Command(bin, "gen", "--path", filepath.Join(logDir, "audit.log"), "--events", fmt.Sprint(n), "--rate", "20000",
		"--maxsize", "1", "--maxbackup", "0", "--compress", "--seed", "11")
	genOut := &strings.Builder{}
	gen.Stdout, gen.Stderr = genOut, genOut
	if err := gen.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill the agent once a third has arrived, while gen still writes.
	for prev, since := -1, time.Now(); count() < n/3; time.Sleep(20 * time.Millisecond) {
		if c := count(); c != prev {
			prev, since = c, time.Now()
		} else if time.Since(since) > stall {
			t.Fatalf("no event arrived for %s (%d so far)\n%s", stall, c, logs())
		}
	}
	agent.Process.Signal(syscall.SIGKILL)
	agent.Wait()
	agent = start(1)
	defer func() { agent.Process.Signal(syscall.SIGTERM); agent.Wait() }()
	if err := gen.Wait(); err != nil {
		t.Fatalf("gen: %v\n%s", err, genOut)
	}
	want := writtenKeys(t, logDir)
	if len(want) != n {
		t.Fatalf("gen wrote %d events, want %d", len(want), n)
	}
	last, since := -1, time.Now()
	for {
		missing := 0
		mu.Lock()
		for k := range want {
			if got[k] == 0 {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if missing != last {
			last, since = missing, time.Now()
		} else if time.Since(since) > stall {
			t.Fatalf("%d of %d events never reached the topic\n%s", missing, n, logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	dups := 0
	mu.Lock()
	for _, c := range got {
		dups += c - 1
	}
	mu.Unlock()
	if dups > 1000 {
		t.Fatalf("%d duplicates after one kill: more than one batch (1,000) was re-sent", dups)
	}
	t.Logf("%d events, all on the topic, %d duplicates after one SIGKILL", n, dups)
}
