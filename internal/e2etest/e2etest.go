// Package e2etest runs the audittail binary end to end for the tests of
// the nested modules (receivers built on libraries audittail's own module
// does not carry): build it, write a rotated and compressed audit log with
// `audittail gen`, kill the agent once mid-run, and wait until every event
// reached the receiver.
package e2etest

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Stall is how long a wait may see no progress before the test fails.
const Stall = 90 * time.Second

// Root returns the audittail module's directory.
func Root(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("e2etest: cannot find its own source file")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "cmd", "audittail")); err != nil {
		t.Fatalf("e2etest: no audittail module at %s: %v", root, err)
	}
	return root
}

// BuildAgent builds the binary into a temporary directory.
func BuildAgent(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "audittail")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/audittail")
	cmd.Dir = Root(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// WrittenKeys returns auditID+"/"+stage of every event in the files of
// dir (plain and .gz).
func WrittenKeys(t testing.TB, dir string) map[string]bool {
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

// KillMidRun runs the agent with output (the YAML of one outputs[] entry,
// indented as a list item), writes events with gen (rotating at 1 MB,
// compressing, as kube-apiserver does), SIGKILLs the agent once a third
// has arrived and starts it again, then waits until received (a snapshot
// of auditID+"/"+stage -> times received) holds every event written. It
// fails on a stall, or on more duplicates than one batch (1,000 events).
func KillMidRun(t *testing.T, output string, received func() map[string]int) {
	t.Helper()
	n := 100_000
	if testing.Short() {
		n = 20_000
	}
	bin := BuildAgent(t)
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, "state_dir: %s\ninputs:\n  - path: %s\n    start_at: beginning\nbatch: {max_events: 1000, max_wait: 100ms}\nmetrics: {listen: \"off\"}\noutputs:\n%s",
		filepath.Join(dir, "state"), filepath.Join(logDir, "audit.log"), output), 0o600)
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
		"--maxsize", "1", "--maxbackup", "0", "--compress", "--seed", "7")
	genOut := &strings.Builder{}
	gen.Stdout, gen.Stderr = genOut, genOut
	if err := gen.Start(); err != nil {
		t.Fatal(err)
	}
	for prev, since := -1, time.Now(); len(received()) < n/3; time.Sleep(20 * time.Millisecond) {
		if c := len(received()); c != prev {
			prev, since = c, time.Now()
		} else if time.Since(since) > Stall {
			t.Fatalf("no event arrived for %s (%d so far)\n%s", Stall, c, logs())
		}
	}
	agent.Process.Signal(syscall.SIGKILL)
	agent.Wait()
	agent = start(1)
	defer func() { agent.Process.Signal(syscall.SIGTERM); agent.Wait() }()
	if err := gen.Wait(); err != nil {
		t.Fatalf("gen: %v\n%s", err, genOut)
	}
	want := WrittenKeys(t, logDir)
	if len(want) != n {
		t.Fatalf("gen wrote %d events, want %d", len(want), n)
	}
	var got map[string]int
	for last, since := -1, time.Now(); ; time.Sleep(200 * time.Millisecond) {
		got = received()
		missing := 0
		for k := range want {
			if got[k] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if missing != last {
			last, since = missing, time.Now()
		} else if time.Since(since) > Stall {
			t.Fatalf("%d of %d events never reached the receiver\n%s", missing, n, logs())
		}
	}
	dups := 0
	for _, c := range got {
		dups += c - 1
	}
	if dups > 1000 {
		t.Fatalf("%d duplicates after one kill: more than one batch (1,000) was re-sent", dups)
	}
	t.Logf("%d events, all received, %d duplicates after one SIGKILL", n, dups)
}
