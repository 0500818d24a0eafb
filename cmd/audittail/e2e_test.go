package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/audittail/audittail/outputs/fluentd/fluentdtest"
)

// e2eEvents is how many events the end-to-end tests write through
// lumberjack (rotating at 1 MB, compressing) while the agent ships them.
func e2eEvents() int {
	if testing.Short() {
		return 20_000
	}
	return 100_000
}

// runE2E starts the agent binary with one output, writes events with
// `audittail gen` (rotation and compression as kube-apiserver does), and
// waits until every auditID that was written has been received. newIDs
// returns the auditIDs that reached the receiver since its previous call.
// The wait has no deadline: it fails when no new event has arrived for
// stallLimit, or when the agent exits.
func runE2E(t *testing.T, output string, newIDs func() []string) {
	t.Helper()
	bin := agentBinary(t)
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	live := filepath.Join(logDir, "audit.log")
	config := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf(`state_dir: %s
inputs:
  - path: %s
    start_at: beginning
batch: {max_events: 1000, max_wait: 100ms}
metrics: {listen: "127.0.0.1:0"}
outputs:
%s`, filepath.Join(dir, "state"), live, output)
	if err := os.WriteFile(config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	agentLog, _ := os.Create(filepath.Join(dir, "agent.log"))
	defer agentLog.Close()
	agent := exec.Command(bin, "run", "--config", config)
	agent.Stdout, agent.Stderr = agentLog, agentLog
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = agent.Wait(); close(exited) }()
	running := func() bool {
		select {
		case <-exited:
			return false
		default:
			return true
		}
	}
	exitStatus := func() string {
		if running() {
			return "running"
		}
		return fmt.Sprintf("exited: %v", exitErr)
	}
	defer func() {
		if running() {
			agent.Process.Kill()
			<-exited
		}
	}()
	agentFailed := func(format string, args ...any) {
		t.Helper()
		data, _ := os.ReadFile(agentLog.Name())
		t.Fatalf(format+"; agent log:\n%s", append(args, data)...)
	}
	err := waitProgress(10*time.Millisecond, stallLimit, func() (int64, bool) {
		_, err := os.Stat(filepath.Join(dir, "state", "checkpoint.json"))
		return 0, err == nil || !running()
	})
	if err != nil || !running() {
		agentFailed("agent did not start (%v, agent %s)", err, exitStatus())
	}
	n := e2eEvents()
	gen := exec.Command(bin, "gen", "--path", live, "--events", fmt.Sprint(n), "--rate", "50000",
		"--maxsize", "1", "--maxbackup", "0", "--compress", "--seed", "5")
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("gen: %v\n%s", err, out)
	}
	want := writtenIDs(t, logDir)
	if len(want) != n {
		t.Fatalf("gen wrote %d events, want %d", len(want), n)
	}
	// pending holds the written auditIDs not received yet.
	pending := make(map[string]bool, len(want))
	for _, id := range want {
		pending[id] = true
	}
	err = waitProgress(200*time.Millisecond, stallLimit, func() (int64, bool) {
		for _, id := range newIDs() {
			delete(pending, id)
		}
		return int64(len(want) - len(pending)), len(pending) == 0 || !running()
	})
	if len(pending) > 0 {
		var first string
		for id := range pending {
			first = id
			break
		}
		agentFailed("%d of %d events never reached the receiver (one: %s): %v, agent %s", len(pending), n, first, err, exitStatus())
	}
	agent.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(stallLimit): // shutdown_timeout is 30s: this is a hang
		agentFailed("agent did not exit within %s of SIGTERM", stallLimit)
	}
	if exitErr != nil {
		agentFailed("agent exited with %v after SIGTERM", exitErr)
	}
}

func TestEndToEndFluentd(t *testing.T) {
	rcv, err := fluentdtest.Start(fluentdtest.Config{SharedKey: "e2e-secret", IDsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	keyFile := filepath.Join(t.TempDir(), "shared-key")
	os.WriteFile(keyFile, []byte("e2e-secret\n"), 0o600)
	taken := 0
	runE2E(t, fmt.Sprintf(`  - name: fluent
    type: fluentd
    address: tcp://%s
    tag: kube.audit
    compress: gzip
    shared_key_file: %s
`, rcv.Addr(), keyFile), func() []string {
		ids := rcv.AuditIDs()[taken:]
		taken += len(ids)
		return ids
	})
	if errs := rcv.Errors(); len(errs) > 0 {
		t.Fatalf("receiver errors: %v", errs)
	}
}

// logdnaReceiver is an ingest endpoint that decodes the documented body
// with encoding/json and keeps the auditID of each line (found in the line,
// which is not decoded further).
type logdnaReceiver struct {
	mu    sync.Mutex
	ids   []string
	taken int // ids handed out by newIDs
	errs  []error
}

func (r *logdnaReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	user, pass, ok := req.BasicAuth()
	if !ok || user != "e2e-key" || pass != "" || req.URL.Path != "/logs/ingest" || req.URL.Query().Get("hostname") == "" {
		http.Error(w, "bad request shape", http.StatusUnauthorized)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	var payload struct {
		Lines []struct {
			Line string `json:"line"`
		} `json:"lines"`
	}
	if err := json.NewDecoder(body).Decode(&payload); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range payload.Lines {
		id := auditID([]byte(l.Line))
		if id == "" {
			r.errs = append(r.errs, fmt.Errorf("a line without an auditID: %.100q", l.Line))
			continue
		}
		r.ids = append(r.ids, id)
	}
	w.WriteHeader(http.StatusOK)
}

func (r *logdnaReceiver) newIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := append([]string(nil), r.ids[r.taken:]...)
	r.taken = len(r.ids)
	return ids
}

func (r *logdnaReceiver) errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

func TestEndToEndLogDNA(t *testing.T) {
	rcv := &logdnaReceiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	t.Setenv("E2E_LOGDNA_KEY", "e2e-key")
	runE2E(t, fmt.Sprintf(`  - name: mezmo
    type: logdna
    url: %s/logs/ingest
    ingestion_key_env: E2E_LOGDNA_KEY
    hostname: cp-1
`, srv.URL), rcv.newIDs)
	if errs := rcv.errors(); len(errs) > 0 {
		t.Fatalf("receiver could not decode %d lines: %v", len(errs), errs[0])
	}
}

// startRsyslogd runs Debian's rsyslogd on a free 127.0.0.1 port (imtcp,
// octet counting) writing each message's MSG to a file, and returns the
// address and that file.
func startRsyslogd(t *testing.T) (string, string) {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		t.Fatalf("rsyslogd is not installed (make test installs it with scripts/install-test-deps.sh): %v", err)
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	out := filepath.Join(dir, "messages.log")
	conf := filepath.Join(dir, "rsyslog.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`global(workDirectory=%q maxMessageSize="256k")
module(load="imtcp")
template(name="msg" type="string" string="%%msg%%\n")
ruleset(name="audit") { action(type="omfile" file=%q template="msg") }
input(type="imtcp" address="127.0.0.1" port="%d" ruleset="audit")
`, dir, out, port)), 0o644)
	cmd := exec.Command(bin, "-n", "-f", conf, "-i", filepath.Join(dir, "pid"))
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, out
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd did not listen on %s:\n%s", addr, logs.String())
		}
	}
}

func TestEndToEndSyslogIntoRsyslog(t *testing.T) {
	addr, out := startRsyslogd(t)
	// rsyslogd appends one MSG per line: read only what is new, up to the
	// last complete line, and take the auditID out of each.
	var offset int64
	runE2E(t, fmt.Sprintf(`  - name: siem
    type: syslog
    address: tcp://%s
    hostname: cp-1
`, addr), func() []string {
		f, err := os.Open(out)
		if err != nil {
			return nil
		}
		defer f.Close()
		data, err := io.ReadAll(io.NewSectionReader(f, offset, math.MaxInt64-offset))
		if err != nil {
			t.Errorf("reading %s: %v", out, err)
		}
		data = data[:bytes.LastIndexByte(data, '\n')+1]
		offset += int64(len(data))
		var ids []string
		for _, line := range bytes.Split(data, []byte("\n")) {
			if id := auditID(line); id != "" {
				ids = append(ids, id)
			}
		}
		return ids
	})
}
