package agent

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/file"
)

const hookToken = "test-token"

// webhookHarness is a harness whose input is a webhook input on
// 127.0.0.1 (plain HTTP with a token: TLS is the handler's tests' and the
// kube-apiserver test's), and whose outputs are files, "down" switchable.
type webhookHarness struct {
	*harness
	down  *switchOutput
	paths map[string]string
	url   string
}

func newWebhookHarness(t *testing.T, names []string, mod func(*Config)) *webhookHarness {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(hookToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *Config) {
		c.Inputs = []InputConfig{{
			Type: InputWebhook, Listen: "127.0.0.1:0", Path: "/audit/webhook/event", Insecure: true,
			Auth:  WebhookAuth{BearerTokenFile: tokenFile},
			Spool: SpoolConfig{Dir: filepath.Join(dir, "spool"), MaxBytes: 8 << 20}, MaxBodyBytes: 1 << 20,
		}}
		c.Outputs = nil
		for _, n := range names {
			c.Outputs = append(c.Outputs, outputs.Config{Name: n, Type: "file"})
		}
		c.CheckpointInterval = 50 * time.Millisecond
		c.ShutdownTimeout = time.Second
		if mod != nil {
			mod(c)
		}
	})
	w := &webhookHarness{harness: h, down: &switchOutput{}, paths: map[string]string{}}
	for _, n := range names {
		w.paths[n] = filepath.Join(h.dir, "out", n+".jsonl")
	}
	return w
}

func (w *webhookHarness) start() *Agent {
	w.t.Helper()
	log := w.log()
	a, err := New(w.cfg, log, func(c outputs.Config) (outputs.Output, error) {
		fo, err := file.New(file.Options{Path: w.paths[c.Name]}, log)
		if c.Name == "down" {
			w.down.Output = fo
			return w.down, err
		}
		return fo, err
	}, Options{})
	if err != nil {
		w.t.Fatal(err)
	}
	w.url = "http://" + a.Addr(0).String() + "/audit/webhook/event"
	w.run(a)
	w.t.Cleanup(func() {
		if w.cancel != nil {
			w.stop()
		}
	})
	return a
}

// eventListBody is an audit.k8s.io/v1 EventList of events from to to, as
// kube-apiserver's webhook backend sends it.
func eventListBody(from, to int) []byte {
	return []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(events(from, to), ",") + `]}`)
}

// spooledEvents is what the outputs get for events from to to: each item
// with its list's apiVersion in front.
func spooledEvents(from, to int) []string {
	var out []string
	for _, e := range events(from, to) {
		out = append(out, `{"apiVersion":"audit.k8s.io/v1",`+e[1:])
	}
	return out
}

func (w *webhookHarness) post(body []byte) (int, http.Header, string) {
	w.t.Helper()
	req, _ := http.NewRequest("POST", w.url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+hookToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(msg)
}

func TestWebhookEventsReachEveryOutputThroughTheSpoolWhichEmptiesOnceAllAcknowledged(t *testing.T) {
	w := newWebhookHarness(t, []string{"a", "b"}, nil)
	a := w.start()
	const lists, per = 50, 40
	for i := 0; i < lists; i++ {
		if code, _, msg := w.post(eventListBody(i*per, (i+1)*per)); code != 200 {
			t.Fatalf("request %d: %d %s", i, code, msg)
		}
	}
	for _, n := range []string{"a", "b"} {
		assertLines(t, waitLines(t, w.paths[n], lists*per, w.logBuf), spooledEvents(0, lists*per))
	}
	spool := a.inputs[0].hook.spool
	waitFor(t, func() bool { return spool.Bytes() == 0 }, "the spool to empty once both outputs' checkpoints are past it")

	reg := prometheus.NewRegistry()
	reg.MustRegister(a.Collector())
	key := a.inputs[0].key
	if got := metricValue(t, reg, "audittail_webhook_requests_total", map[string]string{"input": key, "code": "200"}); got != lists {
		t.Fatalf("requests answered 200: %v", got)
	}
	if got := metricValue(t, reg, "audittail_webhook_events_total", map[string]string{"input": key}); got != lists*per {
		t.Fatalf("events received: %v", got)
	}
	if got := metricValue(t, reg, "audittail_oldest_unacknowledged_seconds", map[string]string{"output": "a", "input": key}); got != 0 {
		t.Fatalf("oldest unacknowledged with everything acknowledged: %v", got)
	}
	w.stop()
	req, _ := http.NewRequest("POST", w.url, bytes.NewReader(eventListBody(0, 1)))
	req.Header.Set("Authorization", "Bearer "+hookToken)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("a request after the agent stopped was acknowledged")
		}
	}
}

func TestAFullSpoolAnswers429UntilTheDownOutputReturnsAndThenEverythingIsDelivered(t *testing.T) {
	w := newWebhookHarness(t, []string{"down"}, func(c *Config) {
		c.Inputs[0].Spool.MaxBytes = 1 << 20
		c.Inputs[0].MaxBodyBytes = 64 << 10
	})
	w.down.down.Store(true)
	a := w.start()
	spool := a.inputs[0].hook.spool
	const per = 500 // about 30 KB a request
	sent, refused := 0, 0
	// Post until the spool is full and refuses.
	for refused == 0 {
		code, hdr, msg := w.post(eventListBody(sent*per, (sent+1)*per))
		switch code {
		case 200:
			sent++
		case 429:
			if hdr.Get("Retry-After") == "" {
				t.Fatalf("429 without Retry-After: %s", msg)
			}
			refused++
		default:
			t.Fatalf("request %d: %d %s", sent, code, msg)
		}
		if sent > 100 {
			t.Fatalf("the spool (max_bytes 1MiB) took %d requests of about 30 KB", sent)
		}
	}
	full := spool.Bytes()
	if full > 1<<20 || full < 900<<10 {
		t.Fatalf("the spool holds %d bytes when it refuses, max_bytes is 1MiB", full)
	}
	// The output returns; a retrying client gets through.
	w.down.down.Store(false)
	for {
		code, _, msg := w.post(eventListBody(sent*per, (sent+1)*per))
		if code == 200 {
			sent++
			break
		}
		if code != 429 {
			t.Fatalf("retry: %d %s", code, msg)
		}
		time.Sleep(50 * time.Millisecond) // a client honouring Retry-After, shortened
	}
	assertLines(t, waitLines(t, w.paths["down"], sent*per, w.logBuf), spooledEvents(0, sent*per))
	waitFor(t, func() bool { return spool.Bytes() == 0 }, "the spool to shrink back once everything is delivered")
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.Collector())
	if got := metricValue(t, reg, "audittail_webhook_requests_total", map[string]string{"code": "429"}); got < 1 {
		t.Fatalf("429s counted: %v", got)
	}
}

func TestSpooledEventsSurviveARestartWhileTheOutputIsDown(t *testing.T) {
	w := newWebhookHarness(t, []string{"down"}, nil)
	w.down.down.Store(true)
	w.start()
	for i := 0; i < 10; i++ {
		if code, _, msg := w.post(eventListBody(i*100, (i+1)*100)); code != 200 {
			t.Fatalf("%d %s", code, msg)
		}
	}
	w.stop()
	if got := readLines(t, w.paths["down"]); len(got) != 0 {
		t.Fatalf("the down output has %d lines", len(got))
	}
	// Restart with the output back: the spool is delivered, then what
	// comes next.
	w.down.down.Store(false)
	w.start()
	if code, _, msg := w.post(eventListBody(1000, 1100)); code != 200 {
		t.Fatalf("%d %s", code, msg)
	}
	assertLines(t, waitLines(t, w.paths["down"], 1100, w.logBuf), spooledEvents(0, 1100))
}

func TestAWebhookInputOnAPortInUseFailsAtStartNamingItAndLeavesNothingOpen(t *testing.T) {
	w := newWebhookHarness(t, []string{"a"}, nil)
	a := w.start()
	busy := a.Addr(0).String()
	w2 := newWebhookHarness(t, []string{"a"}, func(c *Config) { c.Inputs[0].Listen = busy })
	_, err := New(w2.cfg, w2.log(), func(c outputs.Config) (outputs.Output, error) {
		return file.New(file.Options{Path: w2.paths[c.Name]}, w2.log())
	}, Options{})
	if err == nil || !strings.Contains(err.Error(), busy) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("New on a port in use: %v", err)
	}
	// Its spool is not left locked: a second try (on a free port) opens it.
	w2.cfg.Inputs[0].Listen = "127.0.0.1:0"
	a2, err := New(w2.cfg, w2.log(), func(c outputs.Config) (outputs.Output, error) {
		return file.New(file.Options{Path: w2.paths[c.Name]}, w2.log())
	}, Options{})
	if err != nil {
		t.Fatalf("after a failed start, the spool or checkpoint was left open: %v", err)
	}
	w2.run(a2)
	w2.stop()
	if _, err := os.Stat(a.inputs[0].cfg.Spool.Dir); err != nil {
		t.Fatal(err)
	}
}
