package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// webhookReceiver is a stand-in for audittail's webhook input: it decodes
// each EventList with encoding/json and counts the unique auditIDs it
// accepted. answer, when set, chooses the status of the n-th request
// (counting from 0); 0 means accept.
type webhookReceiver struct {
	t      *testing.T
	token  string
	answer func(n int) (status int, retryAfter string)

	mu       sync.Mutex
	requests int
	times    []time.Time
	ids      map[string]int
	sizes    []int
}

func (rcv *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rcv.mu.Lock()
	n := rcv.requests
	rcv.requests++
	rcv.times = append(rcv.times, time.Now())
	rcv.mu.Unlock()
	switch {
	case r.Method != http.MethodPost:
		http.Error(w, "want POST", http.StatusMethodNotAllowed)
		return
	case r.Header.Get("Authorization") != "Bearer "+rcv.token:
		http.Error(w, "bad token", http.StatusUnauthorized)
		return
	case r.Header.Get("Content-Type") != "application/json":
		http.Error(w, "want application/json", http.StatusUnsupportedMediaType)
		return
	case r.URL.Path != "/audit/webhook/event":
		http.NotFound(w, r)
		return
	}
	var list struct {
		Kind       string          `json:"kind"`
		APIVersion string          `json:"apiVersion"`
		Metadata   json.RawMessage `json:"metadata"`
		Items      []struct {
			Kind       string `json:"kind"`
			APIVersion string `json:"apiVersion"`
			AuditID    string `json:"auditID"`
			Stage      string `json:"stage"`
		} `json:"items"`
	}
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(&list); err != nil || dec.More() {
		rcv.t.Errorf("request %d: body is not one JSON object: %v", n, err)
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	if list.Kind != "EventList" || list.APIVersion != "audit.k8s.io/v1" || string(list.Metadata) != "{}" {
		rcv.t.Errorf("request %d: kind %q apiVersion %q metadata %s, want an audit.k8s.io/v1 EventList", n, list.Kind, list.APIVersion, list.Metadata)
	}
	for i, it := range list.Items {
		if it.Kind != "Event" || it.APIVersion != "audit.k8s.io/v1" || it.AuditID == "" || it.Stage == "" {
			rcv.t.Errorf("request %d: items[%d] is not an audit event: %+v", n, i, it)
		}
	}
	if rcv.answer != nil {
		if status, after := rcv.answer(n); status != 0 {
			if after != "" {
				w.Header().Set("Retry-After", after)
			}
			http.Error(w, "not now", status)
			return
		}
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	rcv.sizes = append(rcv.sizes, len(list.Items))
	for _, it := range list.Items {
		rcv.ids[it.AuditID]++
	}
}

// startReceiver starts a TLS webhook receiver on 127.0.0.1 and writes its
// CA and the token (with a trailing newline, as an editor leaves it) to
// files.
func startReceiver(t *testing.T, answer func(int) (int, string)) (rcv *webhookReceiver, url, caFile, tokenFile string) {
	t.Helper()
	rcv = &webhookReceiver{t: t, token: "s3cret-token", answer: answer, ids: map[string]int{}}
	srv := httptest.NewTLSServer(rcv)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	caFile = filepath.Join(dir, "ca.crt")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	tokenFile = filepath.Join(dir, "token")
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte(rcv.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return rcv, srv.URL + "/audit/webhook/event", caFile, tokenFile
}

func gen(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"gen"}, args...), &out, &errb)
	return out.String() + errb.String(), err
}

func TestGenWebhookPostsEventListsOfUniqueEvents(t *testing.T) {
	rcv, url, ca, token := startReceiver(t, nil)
	out, err := gen(t, "--webhook", url, "--ca-file", ca, "--token-file", token,
		"--events", "2000", "--rate", "0", "--clients", "3", "--seed", "7")
	if err != nil {
		t.Fatalf("gen: %v\n%s", err, out)
	}
	if len(rcv.ids) != 2000 {
		t.Errorf("receiver got %d unique auditIDs, want 2000", len(rcv.ids))
	}
	for id, n := range rcv.ids {
		if n != 1 {
			t.Errorf("auditID %s posted %d times", id, n)
		}
	}
	for i, n := range rcv.sizes {
		if n != 400 {
			t.Errorf("request %d holds %d events, want kube-apiserver's default batch, 400", i, n)
		}
	}
	for _, want := range []string{"2000 accepted", "0 refused", "200: 5"} {
		if !strings.Contains(out, want) {
			t.Errorf("report does not say %q:\n%s", want, out)
		}
	}
}

func TestGenWebhookSendsAPartialLastBatch(t *testing.T) {
	rcv, url, ca, token := startReceiver(t, nil)
	if out, err := gen(t, "--webhook", url, "--ca-file", ca, "--token-file", token, "--events", "450", "--batch", "100", "--rate", "0"); err != nil {
		t.Fatalf("gen: %v\n%s", err, out)
	}
	if got := rcv.sizes; len(got) != 5 || got[4] != 50 || len(rcv.ids) != 450 {
		t.Errorf("batches %v, %d unique events; want four of 100 and one of 50", got, len(rcv.ids))
	}
}

func TestGenWebhookRetries(t *testing.T) {
	for _, c := range []struct {
		name       string
		status     int
		retryAfter string
		minWait    time.Duration
	}{
		{"retries a 429 after its Retry-After", http.StatusTooManyRequests, "1", time.Second},
		{"retries a 503 after its Retry-After", http.StatusServiceUnavailable, "1", time.Second},
		{"retries a 500 with backoff", http.StatusInternalServerError, "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			rcv, url, ca, token := startReceiver(t, func(n int) (int, string) {
				if n == 0 {
					return c.status, c.retryAfter
				}
				return 0, ""
			})
			out, err := gen(t, "--webhook", url, "--ca-file", ca, "--token-file", token, "--events", "400", "--rate", "0")
			if err != nil {
				t.Fatalf("gen: %v\n%s", err, out)
			}
			if rcv.requests != 2 || len(rcv.ids) != 400 {
				t.Fatalf("%d requests, %d events accepted; want the batch refused once, then accepted", rcv.requests, len(rcv.ids))
			}
			if wait := rcv.times[1].Sub(rcv.times[0]); wait < c.minWait {
				t.Errorf("retried after %s, before Retry-After %ss", wait, c.retryAfter)
			}
			for _, want := range []string{"400 accepted", "200: 1", fmt.Sprintf("%d: 1", c.status)} {
				if !strings.Contains(out, want) {
					t.Errorf("report does not say %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestGenWebhookDoesNotRetryAnotherClientError(t *testing.T) {
	rcv, url, ca, token := startReceiver(t, func(int) (int, string) { return http.StatusBadRequest, "" })
	out, err := gen(t, "--webhook", url, "--ca-file", ca, "--token-file", token, "--events", "800", "--rate", "0")
	if err == nil || !strings.Contains(err.Error(), "800 of 800 events not accepted") || !strings.Contains(err.Error(), "400 Bad Request: not now") {
		t.Fatalf("gen: %v, want the 400 and its body\n%s", err, out)
	}
	if rcv.requests != 2 {
		t.Errorf("%d requests for two batches: a 400 was retried", rcv.requests)
	}
	if !strings.Contains(out, "0 accepted, 800 refused") || !strings.Contains(out, "400: 2") {
		t.Errorf("report:\n%s", out)
	}
}

func TestGenWebhookSendsTheTokenFromItsFile(t *testing.T) {
	rcv, url, ca, _ := startReceiver(t, nil)
	wrong := filepath.Join(t.TempDir(), "token")
	os.WriteFile(wrong, []byte("not-the-token\n"), 0o600)
	out, err := gen(t, "--webhook", url, "--ca-file", ca, "--token-file", wrong, "--events", "10", "--rate", "0")
	if err == nil || !strings.Contains(err.Error(), "401") || len(rcv.ids) != 0 {
		t.Fatalf("with the wrong token: %v, %d events accepted\n%s", err, len(rcv.ids), out)
	}
	// startReceiver's token file ends in a newline, which is not sent:
	// TestGenWebhookPostsEventListsOfUniqueEvents is accepted with it.
	if _, err := gen(t, "--webhook", url, "--ca-file", ca, "--token", "s3cret-token", "--events", "10"); err == nil {
		t.Errorf("a token on the command line was accepted; it would show in ps and shell history")
	}
}

func TestGenWebhookVerifiesTheServer(t *testing.T) {
	rcv, url, _, token := startReceiver(t, nil)
	out, err := gen(t, "--webhook", url, "--token-file", token, "--events", "10", "--rate", "0")
	if err == nil || !strings.Contains(err.Error(), "certificate") || len(rcv.ids) != 0 {
		t.Fatalf("without --ca-file: %v (%d accepted); want the test CA refused\n%s", err, len(rcv.ids), out)
	}
}

func TestGenWantsExactlyOneOfPathAndWebhook(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"neither", []string{"--events", "1"}, "exactly one of --path and --webhook"},
		{"both", []string{"--path", "/tmp/x/audit.log", "--webhook", "https://127.0.0.1:8443/"}, "exactly one of --path and --webhook"},
		{"a file flag with --webhook", []string{"--webhook", "https://127.0.0.1:8443/", "--maxsize", "5"}, "--maxsize does not apply with --webhook"},
		{"a webhook flag with --path", []string{"--path", "/tmp/x/audit.log", "--batch", "5"}, "--batch does not apply with --path"},
		{"a cert without its key", []string{"--webhook", "https://127.0.0.1:8443/", "--cert-file", "/x.crt"}, "--cert-file and --key-file go together"},
		{"not a URL", []string{"--webhook", "127.0.0.1:8443"}, "is not an http(s) URL"},
		{"no events per request", []string{"--webhook", "https://127.0.0.1:8443/", "--batch", "0"}, "--batch 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := gen(t, c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) || exitCode(err) != 2 {
				t.Errorf("gen %q: %v (exit %d), want a usage error with %q\n%s", c.args, err, exitCode(err), c.want, out)
			}
		})
	}
}
