package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/outputstest"
	"github.com/audittail/audittail/parser"
)

const index = "logs-kubernetes.audit_logs-default"

func newOutput(t testing.TB, o Options) *Output {
	t.Helper()
	if o.Index == "" {
		o.Index = index
	}
	out, err := New(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close(context.Background()) })
	return out
}

func send(t testing.TB, o *Output, b *outputs.Batch) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return o.Send(ctx, b)
}

func TestConformance(t *testing.T) {
	for _, tc := range []struct{ flavor, compression string }{{"es8", ""}, {"os2", "gzip"}} {
		t.Run(tc.flavor, func(t *testing.T) {
			r, srv := newReceiver(t, tc.flavor)
			outputstest.Run(t, outputstest.Harness{
				New: func(t *testing.T) outputs.Output {
					o, err := New(Options{URLs: []string{srv.URL}, Index: index, Compression: tc.compression}, nil)
					if err != nil {
						t.Fatal(err)
					}
					return o
				},
				Received: r.received,
				FailTransient: func(n int) {
					for range n {
						r.script(503)
					}
				},
				FailPermanent: func(n int) {
					for range n {
						r.script(400)
					}
				},
				Reset: r.reset,
			})
			if err := r.errs(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// realEvents returns the native audit.k8s.io events of Elastic's own
// pipeline test (testdata/real, see SOURCES.md).
func realEvents(t testing.TB) [][]byte {
	data, err := os.ReadFile("../../testdata/real/elastic__integrations__packages__kubernetes__data_stream__audit_logs___dev__test__pipeline__test-audit.log")
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, l := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var ev parser.Event
		if parser.Scan(l, &ev) == nil && string(ev.Kind) == "Event" {
			out = append(out, l)
		}
	}
	if len(out) < 3 {
		t.Fatalf("%d native events in Elastic's test file, want 3", len(out))
	}
	return out
}

func batchOf(lines ...[]byte) *outputs.Batch {
	b := &outputs.Batch{Input: "test"}
	for _, l := range lines {
		b.Append(l)
	}
	b.Parse(nil)
	return b
}

// expectedDoc applies, with encoding/json, what Elastic's integration does
// to an event: the ECS fields its ingest pipeline sets, the annotations'
// keys dedotted, the objects' metadata dropped.
func expectedDoc(t testing.TB, line []byte, keepMetadata bool) map[string]any {
	var ev map[string]any
	if err := json.Unmarshal(line, &ev); err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{"@timestamp": ev["stageTimestamp"]}
	e := map[string]any{"kind": "event", "action": ev["verb"]}
	outcome := "unknown"
	if rs, ok := ev["responseStatus"].(map[string]any); ok {
		if c, ok := rs["code"].(float64); ok {
			if c >= 400 {
				outcome = "failure"
			} else if c >= 100 {
				outcome = "success"
			}
		}
	}
	if ann, ok := ev["annotations"].(map[string]any); ok {
		d := map[string]any{}
		for k, v := range ann {
			d[strings.ReplaceAll(k, ".", "_")] = v
			if k == "authorization.k8s.io/decision" {
				switch v {
				case "allow":
					outcome = "success"
				case "forbid":
					outcome = "failure"
				}
			}
		}
		ev["annotations"] = d
	}
	e["outcome"] = outcome
	doc["event"] = e
	if u, ok := ev["user"].(map[string]any); ok {
		user := map[string]any{}
		if n, ok := u["username"]; ok && n != "" {
			user["name"] = n
		}
		if n, ok := u["uid"]; ok && n != "" {
			user["id"] = n
		}
		if len(user) > 0 {
			doc["user"] = user
		}
	}
	if ua, ok := ev["userAgent"]; ok && ua != "" {
		doc["user_agent"] = map[string]any{"original": ua}
	}
	if ips, ok := ev["sourceIPs"].([]any); ok && len(ips) > 0 {
		doc["source"] = map[string]any{"ip": ips}
	}
	if !keepMetadata {
		for _, k := range []string{"requestObject", "responseObject"} {
			if o, ok := ev[k].(map[string]any); ok {
				delete(o, "metadata")
			}
		}
	}
	doc["kubernetes"] = map[string]any{"audit": ev}
	return doc
}

func TestDocumentFollowsElasticsIntegration(t *testing.T) {
	r, srv := newReceiver(t, "es8")
	o := newOutput(t, Options{URLs: []string{srv.URL}})
	lines := realEvents(t)
	if err := send(t, o, batchOf(lines...)); err != nil {
		t.Fatal(err)
	}
	// Elastic's expected pipeline output for these events
	// (test-audit.log-expected.json beside the test file upstream).
	want := []struct{ id, action, outcome, userID, userName, agent, ip string }{
		{"abcde12345-ResponseComplete", "get", "success", "12345678", "system:serviceaccounts:default:default", "kubectl/v1.26.1", "67.43.156.1"},
	}
	for _, w := range want {
		d := r.docWhere(index, func(a map[string]any) bool { return a["requestURI"] == "/api/v1/namespaces/default/pods" })
		if d == nil {
			t.Fatalf("no document %s; stored: %d", w.id, r.count(index))
		}
		ev := d["event"].(map[string]any)
		user := d["user"].(map[string]any)
		got := []string{ev["kind"].(string), ev["action"].(string), ev["outcome"].(string), user["id"].(string), user["name"].(string),
			d["user_agent"].(map[string]any)["original"].(string), d["source"].(map[string]any)["ip"].([]any)[0].(string)}
		if exp := []string{"event", w.action, w.outcome, w.userID, w.userName, w.agent, w.ip}; !reflect.DeepEqual(got, exp) {
			t.Errorf("%s: ECS fields %q, want %q", w.id, got, exp)
		}
		ann := d["kubernetes"].(map[string]any)["audit"].(map[string]any)["annotations"].(map[string]any)
		if ann["authorization_k8s_io/decision"] != "allow" {
			t.Errorf("%s: annotations %v, want the decision under authorization_k8s_io/decision", w.id, ann)
		}
	}
	// Elastic's file holds two byte-identical lines (stored once) and
	// reuses one auditID for three different events (each stored).
	if n := r.count(index); n != len(lines)-1 {
		t.Errorf("%d documents from %d lines (two identical), want %d", n, len(lines), len(lines)-1)
	}
	// The first line's document equals the event transformed with
	// encoding/json.
	first := r.docWhere(index, func(a map[string]any) bool { return a["requestURI"] == "/api/v1/namespaces/default/pods" })
	if got, want := first, expectedDoc(t, lines[0], false); !reflect.DeepEqual(got, want) {
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		t.Errorf("document\n%s\nwant\n%s", gb, wb)
	}
}

func TestDocumentsOfGeneratedEventsEqualTheIntegrationsTransform(t *testing.T) {
	for _, keep := range []bool{false, true} {
		r, srv := newReceiver(t, "es8")
		mode := "drop"
		if keep {
			mode = "keep"
		}
		o := newOutput(t, Options{URLs: []string{srv.URL}, ObjectMetadata: mode})
		b, _ := outputstest.NewBatch(5, 300)
		if err := send(t, o, b); err != nil {
			t.Fatal(err)
		}
		r.mu.Lock()
		raw := append([]string(nil), r.raw...)
		r.mu.Unlock()
		if len(raw) != b.Len() {
			t.Fatalf("%d documents stored, want %d", len(raw), b.Len())
		}
		for i := range b.Len() {
			var got map[string]any
			if err := json.Unmarshal([]byte(raw[i]), &got); err != nil {
				t.Fatal(err)
			}
			want := expectedDoc(t, b.Line(i), keep)
			if !reflect.DeepEqual(got, want) {
				gb, _ := json.Marshal(got)
				wb, _ := json.Marshal(want)
				t.Fatalf("object_metadata %s, event %d: document\n%s\nwant\n%s", mode, i, gb, wb)
			}
		}
	}
}

func TestResentBatchIsStoredOnceAnd409CountsAsAcknowledged(t *testing.T) {
	r, srv := newReceiver(t, "es8")
	o := newOutput(t, Options{URLs: []string{srv.URL}})
	b, ids := outputstest.NewBatch(7, 100)
	for range 2 {
		if err := send(t, o, b); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.count(index); n != len(ids) {
		t.Fatalf("%d documents stored after sending a batch twice, want %d", n, len(ids))
	}
	if d := o.Duplicates(); d != int64(len(ids)) {
		t.Errorf("Duplicates() = %d, want %d", d, len(ids))
	}
}

// TestEventsSharingAnAuditIDAreAllStored: kube-apiserver takes a client's
// Audit-ID header as the auditID, and aggregated API servers log the same
// auditID: two different events with one auditID and stage must both be
// stored, and a long Audit-ID must not make an _id Elasticsearch refuses.
func TestEventsSharingAnAuditIDAreAllStored(t *testing.T) {
	r, srv := newReceiver(t, "es8")
	o := newOutput(t, Options{URLs: []string{srv.URL}})
	ev := func(id, verb string) []byte {
		return fmt.Appendf(nil, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":%q,"stage":"ResponseComplete","verb":%q,"user":{"username":"mallory"},"stageTimestamp":"2026-11-23T10:54:44.681393Z"}`, id, verb)
	}
	long := strings.Repeat("x", 600)
	b := batchOf(ev("same", "get"), ev("same", "create"), ev(long, "get"))
	if err := send(t, o, b); err != nil {
		t.Fatal(err)
	}
	if err := send(t, o, b); err != nil {
		t.Fatal(err)
	}
	if n := r.count(index); n != 3 {
		t.Fatalf("%d documents stored, want 3 (each once)", n)
	}
	for _, id := range r.ids(index) {
		if len(id) > 512 {
			t.Errorf("an _id of %d bytes: Elasticsearch refuses more than 512", len(id))
		}
	}
	if o.Duplicates() != 3 {
		t.Errorf("Duplicates() = %d after sending the batch twice, want 3", o.Duplicates())
	}
}

func TestMixedItemAnswers(t *testing.T) {
	r, srv := newReceiver(t, "es8")
	o := newOutput(t, Options{URLs: []string{srv.URL}})
	b, _ := outputstest.NewBatch(8, 40)
	// Documents 0-9 are stored before (409 on this send), 10-19 answer
	// 429, 20-29 a mapping error; 30-39 are created.
	var first [][]byte
	for i := range 10 {
		first = append(first, b.Line(i))
	}
	if err := send(t, o, batchOf(first...)); err != nil {
		t.Fatal(err)
	}
	r.scriptItems(func(k int, id string) (int, string) {
		switch {
		case k >= 10 && k < 20:
			return 429, "es_rejected_execution_exception: rejected execution of coordinating operation"
		case k >= 20 && k < 30:
			return 400, "document_parsing_exception: failed to parse field [kubernetes.audit.x] of type [long]"
		}
		return 0, ""
	})
	err := send(t, o, b)
	var pe *outputs.PartialError
	if !errors.As(err, &pe) {
		t.Fatalf("Send = %v, want a PartialError", err)
	}
	if want := seq(10, 30); !reflect.DeepEqual(pe.Lines, want) {
		t.Fatalf("PartialError.Lines = %v, want %v (the 429s to retry and the 400s, rejected again on the resend)", pe.Lines, want)
	}
	if n := r.count(index); n != 20 {
		t.Fatalf("%d stored, want 20", n)
	}
	// The resend of those lines: the 429s pass now, the 400s are
	// rejected for good.
	r.scriptItems(func(k int, id string) (int, string) {
		if k >= 10 {
			return 400, "document_parsing_exception: still bad"
		}
		return 0, ""
	})
	b.Keep(pe.Lines)
	err = send(t, o, b)
	var re *outputs.RejectedError
	if !errors.As(err, &re) || !reflect.DeepEqual(re.Lines, seq(10, 20)) || !strings.Contains(err.Error(), "document_parsing_exception") {
		t.Fatalf("resend = %v, want the 10 mapping errors rejected with their reason", err)
	}
	if n := r.count(index); n != 30 {
		t.Fatalf("%d stored, want 30", n)
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func TestItemsRefusedForPrivilegesWaitInsteadOfBeingDeadLettered(t *testing.T) {
	for _, code := range []int{401, 403, 404} {
		r, srv := newReceiver(t, "es8")
		o := newOutput(t, Options{URLs: []string{srv.URL}})
		r.scriptItems(func(int, string) (int, string) {
			return code, "security_exception: action [indices:data/write/bulk[s]] is unauthorized"
		})
		b, _ := outputstest.NewBatch(17, 5)
		err := send(t, o, b)
		var ra *outputs.RetryAfterError
		var re *outputs.RejectedError
		if err == nil || outputs.IsPermanent(err) || errors.As(err, &re) || !errors.As(err, &ra) || ra.After != configRetry {
			t.Errorf("items answered %d: Send = %v, want a retry after %s, nothing rejected", code, err, configRetry)
		}
	}
}

func TestAnAnswerThatIsNotABulkAnswerIsNotSuccess(t *testing.T) {
	for name, body := range map[string]string{
		"html from a proxy":        `<html>ok</html>`,
		"no errors key":            `{"took":1,"items":[]}`,
		"errors true, items short": `{"took":1,"errors":true,"items":[{"create":{"status":201}}]}`,
		"empty":                    ``,
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				io.WriteString(w, body)
			}))
			defer srv.Close()
			o := newOutput(t, Options{URLs: []string{srv.URL}})
			b, _ := outputstest.NewBatch(9, 5)
			err := send(t, o, b)
			if err == nil || outputs.IsPermanent(err) {
				t.Fatalf("Send = %v, want a retryable error", err)
			}
		})
	}
}

func TestURLsAreTriedInTurn(t *testing.T) {
	r, srv := newReceiver(t, "es8")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there
	o := newOutput(t, Options{URLs: []string{dead, srv.URL}})
	b, ids := outputstest.NewBatch(11, 20)
	if err := send(t, o, b); err != nil {
		t.Fatalf("Send with the first URL down: %v", err)
	}
	if n := r.count(index); n != len(ids) {
		t.Fatalf("%d stored, want %d", n, len(ids))
	}
	// The output stays on the node that answered; a 503 from it moves on
	// (to the dead one) and the error is returned.
	r.script(503)
	if err := send(t, o, b); err == nil {
		t.Fatal("Send = nil with one node answering 503 and the other down")
	}
	if err := send(t, o, b); err != nil {
		t.Fatalf("Send after the 503: %v", err)
	}
}

func TestCredentials(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	r, srv := newReceiver(t, "es8")
	r.auth = "Basic ZWxhc3RpYzpzM2NyZXQ=" // elastic:s3cret
	o := newOutput(t, Options{URLs: []string{srv.URL}, Username: "elastic", PasswordFile: pw})
	b, _ := outputstest.NewBatch(12, 5)
	if err := send(t, o, b); err != nil {
		t.Fatal(err)
	}
	// The password changes on the server: 401 blames the configuration,
	// and is retried later, not dead-lettered.
	r.mu.Lock()
	r.auth = "Basic ZWxhc3RpYzpuZXc=" // elastic:new
	r.mu.Unlock()
	err := send(t, o, b)
	var ra *outputs.RetryAfterError
	if !errors.As(err, &ra) || outputs.IsPermanent(err) || !strings.Contains(err.Error(), "password_file") {
		t.Fatalf("Send with a wrong password = %v, want a RetryAfterError naming password_file", err)
	}
	// The Secret is updated: the file is read again after the 401.
	os.WriteFile(pw, []byte("new"), 0o600)
	if err := send(t, o, b); err == nil {
		t.Fatal("the first Send after the rotation should report the 401 and switch")
	}
	if err := send(t, o, b); err != nil {
		t.Fatalf("Send with the rotated password: %v", err)
	}

	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte("VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="), 0o600)
	r.mu.Lock()
	r.auth = "ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
	r.mu.Unlock()
	ko := newOutput(t, Options{URLs: []string{srv.URL}, APIKeyFile: key})
	if err := send(t, ko, b); err != nil {
		t.Fatalf("Send with an API key: %v", err)
	}
}

func TestTooLargeRequestHalvesTheRequestSize(t *testing.T) {
	r, srv := newReceiver(t, "es8")
	o := newOutput(t, Options{URLs: []string{srv.URL}, MaxRequestBytes: 4 << 20})
	b, ids := outputstest.NewBatch(13, 3000)
	r.script(413)
	if err := send(t, o, b); err == nil || outputs.IsPermanent(err) {
		t.Fatalf("Send answered 413 = %v, want a retryable error", err)
	}
	if err := send(t, o, b); err != nil {
		t.Fatal(err)
	}
	if n := r.count(index); n != len(ids) {
		t.Fatalf("%d stored, want %d", n, len(ids))
	}
	if o.maxBody != 2<<20 {
		t.Errorf("request size after a 413 = %d, want %d", o.maxBody, 2<<20)
	}
}

func TestAnOversizeEventIsCutAndATooLargeOneRejected(t *testing.T) {
	r, srv := newReceiver(t, "es8")
	o := newOutput(t, Options{URLs: []string{srv.URL}, MaxRequestBytes: 1 << 20})
	big := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"big-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/a/configmaps","verb":"create","user":{"username":"alice"},"objectRef":{"resource":"configmaps","namespace":"a","name":"c"},"responseStatus":{"code":201},"requestObject":{"data":{"x":"` +
		strings.Repeat("a", 2<<20) + `"}},"requestReceivedTimestamp":"2026-11-23T10:54:44.671393Z","stageTimestamp":"2026-11-23T10:54:44.681393Z"}`
	huge := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"big-2","stage":"ResponseComplete","verb":"get","user":{"username":"` + strings.Repeat("b", 2<<20) + `"},"stageTimestamp":"2026-11-23T10:54:44.681393Z"}`
	b, _ := outputstest.NewBatch(14, 3)
	b2 := batchOf(b.Line(0), []byte(big), []byte(huge), b.Line(1))
	err := send(t, o, b2)
	var re *outputs.RejectedError
	if !errors.As(err, &re) || !reflect.DeepEqual(re.Lines, []int{2}) {
		t.Fatalf("Send = %v, want the event too large even when cut rejected (line 2)", err)
	}
	d := r.doc(index, "big-1-ResponseComplete")
	if d == nil {
		t.Fatal("the cut event was not stored")
	}
	au := d["kubernetes"].(map[string]any)["audit"].(map[string]any)
	if _, ok := au["requestObject"]; ok {
		t.Error("the cut event kept its requestObject")
	}
	if ann := au["annotations"].(map[string]any); ann["audittail_io/truncated"] != "requestObject" {
		t.Errorf("annotations %v, want audittail_io/truncated: requestObject", ann)
	}
	if o.Truncated() != 1 {
		t.Errorf("Truncated() = %d, want 1", o.Truncated())
	}
}

func TestAnEventThatFitsWithoutItsMetadataIsNotCut(t *testing.T) {
	r, srv := newReceiver(t, "es8")
	o := newOutput(t, Options{URLs: []string{srv.URL}, MaxRequestBytes: 1 << 20})
	line := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"mf-1","stage":"ResponseComplete","verb":"update","requestObject":{"metadata":{"managedFields":[{"x":"` +
		strings.Repeat("m", 1<<20) + `"}]},"spec":{"replicas":3}},"stageTimestamp":"2026-11-23T10:54:44.681393Z"}`
	if err := send(t, o, batchOf([]byte(line))); err != nil {
		t.Fatal(err)
	}
	d := r.doc(index, "mf-1-ResponseComplete")
	if d == nil {
		t.Fatal("not stored")
	}
	ro, ok := d["kubernetes"].(map[string]any)["audit"].(map[string]any)["requestObject"].(map[string]any)
	if !ok || ro["spec"] == nil || o.Truncated() != 0 {
		t.Fatalf("requestObject %v, Truncated %d: want the spec kept (only the metadata dropped), nothing cut", ro, o.Truncated())
	}
}

func TestALineThatIsNotAnEventIsStoredOnceAsAMessage(t *testing.T) {
	r, srv := newReceiver(t, "es8")
	o := newOutput(t, Options{URLs: []string{srv.URL}})
	b := batchOf([]byte(`not json at all`))
	for range 2 {
		if err := send(t, o, b); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.count(index); n != 1 {
		t.Fatalf("%d stored, want 1", n)
	}
	r.mu.Lock()
	raw := r.raw[0]
	r.mu.Unlock()
	var d struct {
		Message string
		Event   struct{ Kind string }
	}
	json.Unmarshal([]byte(raw), &d)
	if d.Message != "not json at all" || d.Event.Kind != "pipeline_error" {
		t.Fatalf("document %s", raw)
	}
}

func TestWholeRequestAnswers(t *testing.T) {
	for _, tc := range []struct {
		code      int
		permanent bool
		after     bool
	}{
		{400, true, false}, {501, true, false},
		{401, false, true}, {403, false, true}, {404, false, true},
		{429, false, false}, {500, false, false}, {503, false, false},
	} {
		r, srv := newReceiver(t, "es8")
		o := newOutput(t, Options{URLs: []string{srv.URL}})
		b, _ := outputstest.NewBatch(15, 3)
		r.script(tc.code)
		err := send(t, o, b)
		var ra *outputs.RetryAfterError
		if err == nil || outputs.IsPermanent(err) != tc.permanent || errors.As(err, &ra) != tc.after {
			t.Errorf("answer %d: Send = %v, want permanent=%v retry-after=%v", tc.code, err, tc.permanent, tc.after)
		}
	}
}

func TestCheckPassesAUserThatMayOnlyWrite(t *testing.T) {
	for code, ok := range map[int]bool{403: true, 401: false} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			io.WriteString(w, `{"error":{"type":"security_exception"}}`)
		}))
		o := newOutput(t, Options{URLs: []string{srv.URL}})
		if err := o.Check(context.Background()); (err == nil) != ok {
			t.Errorf("GET / answered %d: Check = %v", code, err)
		}
		srv.Close()
	}
}

func TestCheck(t *testing.T) {
	for flavor, ok := range map[string]bool{"es8": true, "os2": true, "es6": false} {
		_, srv := newReceiver(t, flavor)
		o := newOutput(t, Options{URLs: []string{srv.URL}})
		err := o.Check(context.Background())
		if (err == nil) != ok {
			t.Errorf("%s: Check = %v", flavor, err)
		}
	}
}

func TestOptionErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("x"), 0o600)
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{}, "urls: required"},
		{Options{URLs: []string{"es-0:9200"}}, "urls[0]"},
		{Options{URLs: []string{"https://u:p@es-0:9200"}}, "must not hold credentials"},
		{Options{URLs: []string{"https://es-0:9200"}, Index: "Logs"}, "index: \"Logs\" must be lowercase"},
		{Options{URLs: []string{"https://es-0:9200"}, Index: "a b"}, "index"},
		{Options{URLs: []string{"https://es-0:9200"}, Username: "elastic"}, "password_file: required"},
		{Options{URLs: []string{"https://es-0:9200"}, Username: "e", PasswordFile: pw, APIKeyFile: pw}, "set only one"},
		{Options{URLs: []string{"https://es-0:9200"}, APIKeyFile: filepath.Join(dir, "missing")}, "api_key_file: cannot read"},
		{Options{URLs: []string{"https://es-0:9200"}, Compression: "zstd"}, "compression"},
		{Options{URLs: []string{"https://es-0:9200"}, ObjectMetadata: "x"}, "object_metadata"},
		{Options{URLs: []string{"https://es-0:9200"}, MaxRequestBytes: 1000}, "max_request_bytes"},
		{Options{URLs: []string{"https://es-0:9200", "http://es-1:9200"}}, "mixing"},
	} {
		_, err := New(tc.o, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tc.o, err, tc.want)
		}
	}
}

// FuzzDocument checks that for any line Scan accepts the document is
// valid JSON and equals the integration's transform of the event.
func FuzzDocument(f *testing.F) {
	b, _ := outputstest.NewBatch(16, 20)
	for i := range b.Len() {
		f.Add(append([]byte(nil), b.Line(i)...))
	}
	f.Add([]byte(`{"kind":"Event","annotations":{"a.b":"c","authorization.k8s.io/decision":"forbid"},"requestObject":{"x":1, "metadata" : {"labels":{}} ,"y":[1]},"responseObject":{"metadata":{}},"sourceIPs":["::1","nope"]}`))
	f.Add([]byte(`{"requestObject":{"metadata":1},"annotations":{}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var ev parser.Event
		if parser.Scan(line, &ev) != nil {
			return
		}
		var m map[string]any
		if json.Unmarshal(line, &m) != nil {
			return // Scan accepts some lines encoding/json does not (duplicate-free is not checked)
		}
		e := encoder{limit: 1 << 30}
		doc, res := e.appendDoc(nil, line, &ev, time.Unix(0, 0))
		if res != docOK {
			t.Fatalf("result %d", res)
		}
		var got map[string]any
		if err := json.Unmarshal(doc, &got); err != nil {
			t.Fatalf("document is not JSON: %v\n%s", err, doc)
		}
		au, _ := got["kubernetes"].(map[string]any)["audit"].(map[string]any)
		want := m
		if ann, ok := want["annotations"].(map[string]any); ok {
			d := map[string]any{}
			for k, v := range ann {
				k = strings.ReplaceAll(k, ".", "_")
				if _, dup := d[k]; dup {
					return // two keys the same once dedotted: which wins is not defined
				}
				d[k] = v
			}
			want["annotations"] = d
		}
		for _, k := range []string{"requestObject", "responseObject"} {
			if o, ok := want[k].(map[string]any); ok {
				delete(o, "metadata")
			}
		}
		if !reflect.DeepEqual(au, want) {
			t.Fatalf("kubernetes.audit = %v, want %v", au, want)
		}
	})
}
