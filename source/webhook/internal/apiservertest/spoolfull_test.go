package apiservertest

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ingest is a LogDNA ingest API on 127.0.0.1 that answers 503 while down
// and otherwise records the auditID of every line (decoded with
// encoding/json, independently of audittail).
type ingest struct {
	down atomic.Bool
	mu   sync.Mutex
	ids  map[string]int
}

func (g *ingest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.down.Load() {
		http.Error(w, "down for the test", http.StatusServiceUnavailable)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	var req struct {
		Lines []struct {
			Line string `json:"line"`
		} `json:"lines"`
	}
	if err := json.NewDecoder(body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range req.Lines {
		var ev struct {
			AuditID string `json:"auditID"`
		}
		if err := json.Unmarshal([]byte(l.Line), &ev); err != nil || ev.AuditID == "" {
			http.Error(w, fmt.Sprintf("a line that is not an audit event: %.100s", l.Line), http.StatusBadRequest)
			return
		}
		g.ids[ev.AuditID]++
	}
	w.WriteHeader(http.StatusOK)
}

func (g *ingest) count() (distinct int, ids map[string]int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ids = make(map[string]int, len(g.ids))
	for k, v := range g.ids {
		ids[k] = v
	}
	return len(ids), ids
}

// metric returns the value of the first sample of name (with labels
// containing match) that the agent's /metrics shows, or -1.
func metric(url, name, match string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, name) && strings.Contains(l, match) {
			f := strings.Fields(l)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

func TestAFullSpoolAnswers429AndKubeAPIServersBackendRetriesUntilTheOutputReturns(t *testing.T) {
	dir := t.TempDir()
	bin := buildAgent(t)
	p := newPKI(t, dir)
	token := "another-test-token"
	tokenFile := filepath.Join(dir, "token")
	keyFile := filepath.Join(dir, "ingestion-key")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	os.WriteFile(keyFile, []byte("test-key\n"), 0o600)
	sink := &ingest{ids: map[string]int{}}
	sink.down.Store(true)
	srv := httptest.NewServer(sink)
	defer srv.Close()

	addr, metricsAddr := freePort(t), freePort(t)
	metricsURL := "http://" + metricsAddr + "/metrics"
	cfg := filepath.Join(dir, "audittail.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, `state_dir: %s
checkpoint_interval: 100ms
metrics: {listen: %q}
inputs:
  - type: webhook
    listen: %s
    tls: {cert_file: %s, key_file: %s, client_ca_file: %s}
    auth: {bearer_token_file: %s}
    max_body_bytes: 512KiB
    spool: {dir: %s, max_bytes: 2MiB}
outputs:
  - type: logdna
    url: %s/logs/ingest
    ingestion_key_file: %s
    compress: none
`, filepath.Join(dir, "state"), metricsAddr, addr, p.certFile, p.keyFile, p.caFile, tokenFile, filepath.Join(dir, "spool"), srv.URL, keyFile), 0o600)
	agent := &agentProc{t: t, bin: bin, cfg: cfg, dir: dir}
	agent.start()
	defer agent.terminate()

	rec, backend, stop := startBackend(t, writeKubeconfig(t, dir, "https://"+addr+"/", p, token))
	// About 700 bytes an event: 8,000 are 2.5 times max_bytes.
	const total = 8000
	for i := range total {
		backend.ProcessEvents(newEvent(i))
	}
	// The spool fills, and the agent answers 429.
	waitUntil(t, func() bool { return metric(metricsURL, "audittail_webhook_requests_total", `code="429"`) > 0 }, "a 429 from the full spool", agent)
	held := metric(metricsURL, "audittail_spool_bytes", "")
	if held > 2<<20 || held < 1<<20 {
		t.Fatalf("the full spool holds %v bytes; max_bytes is 2MiB", held)
	}
	// The output returns: what was spooled and what the backend retries
	// is delivered.
	sink.down.Store(false)
	close(stop)
	backend.Shutdown() // waits for the retries
	want := rec.snapshot()
	if rec.failed > 0 {
		t.Fatalf("the backend gave up on %d events: its retries did not outlast the full spool\n%s", rec.failed, agent.allLogs())
	}
	if len(want) != total {
		t.Fatalf("the backend got a 2xx for %d of %d events", len(want), total)
	}
	waitUntil(t, func() bool { n, _ := sink.count(); return n == total }, "every event at the receiver", agent)
	_, got := sink.count()
	for id := range want {
		if got[id] == 0 {
			t.Fatalf("acknowledged but not delivered: %s", id)
		}
	}
	waitUntil(t, func() bool { return metric(metricsURL, "audittail_spool_bytes", "") == 0 }, "the spool to shrink back to nothing", agent)
	t.Logf("%v requests answered 429; all %d events delivered", metric(metricsURL, "audittail_webhook_requests_total", `code="429"`), total)
}

// waitUntil waits for cond, failing after stall (a generous bound: the
// conditions here wait on retries of seconds).
func waitUntil(t *testing.T, cond func() bool, what string, agent *agentProc) {
	t.Helper()
	for deadline := time.Now().Add(stall); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("waited %s for %s\n%s", stall, what, agent.allLogs())
}
