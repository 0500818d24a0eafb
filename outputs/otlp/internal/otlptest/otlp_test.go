package otlptest

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/otlp"
	"github.com/audittail/audittail/outputs/outputstest"
)

// answer is a scripted reply.
type answer struct {
	code       int
	retryAfter string
	rejected   int64 // a 200 with a partial success
}

// receiver is an OTLP/HTTP logs endpoint on 127.0.0.1 decoding with pdata.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	ids    []string
	logs   []plog.Logs
	script []answer
	auth   []string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/logs" || req.Method != http.MethodPost {
		http.Error(w, "not the logs endpoint", http.StatusNotFound)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "content type "+ct, http.StatusUnsupportedMediaType)
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
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.auth = append(r.auth, req.Header.Get("Authorization"))
	var a answer
	if len(r.script) > 0 {
		a, r.script = r.script[0], r.script[1:]
	}
	if a.code != 0 && a.code != 200 {
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		http.Error(w, "scripted", a.code)
		return
	}
	er := plogotlp.NewExportRequest()
	if err := er.UnmarshalProto(data); err != nil {
		http.Error(w, "not an ExportLogsServiceRequest: "+err.Error(), http.StatusBadRequest)
		return
	}
	logs := er.Logs()
	r.logs = append(r.logs, logs)
	rls := logs.ResourceLogs()
	for i := range rls.Len() {
		sls := rls.At(i).ScopeLogs()
		for j := range sls.Len() {
			recs := sls.At(j).LogRecords()
			for k := range recs.Len() {
				// A line that is not an audit event has no attributes.
				v, _ := recs.At(k).Attributes().Get("k8s.audit.event.id")
				r.ids = append(r.ids, v.Str())
			}
		}
	}
	resp := plogotlp.NewExportResponse()
	if a.rejected > 0 {
		resp.PartialSuccess().SetRejectedLogRecords(a.rejected)
		resp.PartialSuccess().SetErrorMessage("scripted partial success")
	}
	out, _ := resp.MarshalProto()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func (r *receiver) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

func (r *receiver) push(a ...answer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.script = append(r.script, a...)
}

func (r *receiver) newOutput(t *testing.T, mod func(*otlp.Options)) *otlp.Output {
	t.Helper()
	o := otlp.Options{Endpoint: r.srv.URL, NodeName: "node-1", ClusterName: "prod-eu-1", Version: "test"}
	if mod != nil {
		mod(&o)
	}
	out, err := otlp.New(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestConformance(t *testing.T) {
	for _, compression := range []string{"gzip", "none"} {
		t.Run(compression, func(t *testing.T) {
			r := newReceiver(t)
			outputstest.Run(t, outputstest.Harness{
				New: func(t *testing.T) outputs.Output {
					return r.newOutput(t, func(o *otlp.Options) { o.Compression = compression })
				},
				Received: r.received,
				FailTransient: func(n int) {
					for range n {
						r.push(answer{code: 503})
					}
				},
				FailPermanent: func(n int) {
					for range n {
						r.push(answer{code: 400})
					}
				},
				Reset: func() {
					r.mu.Lock()
					r.ids, r.logs, r.script = nil, nil, nil
					r.mu.Unlock()
				},
			})
		})
	}
}

func send(t *testing.T, o *otlp.Output, b *outputs.Batch) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return o.Send(ctx, b)
}

func TestAnswersAreClassifiedAsTheOTLPSpecificationSays(t *testing.T) {
	r := newReceiver(t)
	o := r.newOutput(t, nil)
	defer o.Close(context.Background())
	b, ids := outputstest.NewBatch(7, 20)

	r.push(answer{code: 429, retryAfter: "3"})
	var ra *outputs.RetryAfterError
	if err := send(t, o, b); !errors.As(err, &ra) || ra.After != 3*time.Second || outputs.IsPermanent(err) {
		t.Fatalf("429 with Retry-After: 3: %v", err)
	}
	for _, code := range []int{502, 503, 504} {
		r.push(answer{code: code})
		if err := send(t, o, b); err == nil || outputs.IsPermanent(err) {
			t.Fatalf("%d: %v, want a retryable error", code, err)
		}
	}
	for _, code := range []int{400, 401, 404, 413, 500} {
		r.push(answer{code: code})
		if err := send(t, o, b); !outputs.IsPermanent(err) {
			t.Fatalf("%d: %v, want a permanent error", code, err)
		}
	}
	if len(r.received()) != 0 {
		t.Fatal("a refused request was counted as received")
	}
	r.push(answer{rejected: 2})
	if err := send(t, o, b); err != nil {
		t.Fatalf("a partial success is a 200: %v", err)
	}
	if o.Rejected() != 2 {
		t.Fatalf("rejected records counted: %d, want 2", o.Rejected())
	}
	if got := r.received(); strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("received %d of %d", len(got), len(ids))
	}
}

func TestARecordCarriesTheEventItsTimeSeverityAttributesAndResource(t *testing.T) {
	r := newReceiver(t)
	for _, body := range []string{"string", "map"} {
		t.Run(body, func(t *testing.T) {
			r.mu.Lock()
			r.logs, r.ids = nil, nil
			r.mu.Unlock()
			o := r.newOutput(t, func(o *otlp.Options) { o.Body = body })
			defer o.Close(context.Background())
			b := &outputs.Batch{Input: "/var/log/audit.log"}
			line := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/kube-system/secrets/x","verb":"get","user":{"username":"system:admin","groups":["system:masters","system:authenticated"]},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl/v1.37.0","objectRef":{"resource":"secrets","namespace":"kube-system","name":"x","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":403},"requestReceivedTimestamp":"2026-12-03T10:00:00.123456Z","stageTimestamp":"2026-12-03T10:00:00.234567Z","annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":"a \"quoted\" reason"}}`
			b.Append([]byte(line))
			b.Append([]byte(`not json at all`))
			b.Parse(nil)
			if err := send(t, o, b); err != nil {
				t.Fatal(err)
			}
			r.mu.Lock()
			logs := r.logs[0]
			r.mu.Unlock()
			rl := logs.ResourceLogs().At(0)
			for k, want := range map[string]string{"service.name": "kube-apiserver", "k8s.node.name": "node-1", "k8s.cluster.name": "prod-eu-1"} {
				if v, ok := rl.Resource().Attributes().Get(k); !ok || v.Str() != want {
					t.Errorf("resource %s = %v, want %s", k, v.AsString(), want)
				}
			}
			recs := rl.ScopeLogs().At(0).LogRecords()
			if recs.Len() != 2 {
				t.Fatalf("%d records, want 2", recs.Len())
			}
			rec := recs.At(0)
			if got := rec.Timestamp().AsTime(); !got.Equal(time.Date(2026, 12, 3, 10, 0, 0, 234567000, time.UTC)) {
				t.Errorf("timestamp %s, want the stageTimestamp", got)
			}
			if rec.ObservedTimestamp() == 0 || rec.SeverityNumber() != plog.SeverityNumberWarn || rec.SeverityText() != "WARN" {
				t.Errorf("observed %d, severity %v %q; want WARN for a 403", rec.ObservedTimestamp(), rec.SeverityNumber(), rec.SeverityText())
			}
			attrs := rec.Attributes()
			for k, want := range map[string]string{
				"k8s.audit.event.level": "Metadata", "k8s.audit.event.stage": "ResponseComplete", "k8s.audit.event.verb": "get",
				"k8s.audit.event.user_agent": "kubectl/v1.37.0", "k8s.audit.event.request.uri": "/api/v1/namespaces/kube-system/secrets/x",
				"k8s.audit.event.object_ref.resource": "secrets", "k8s.audit.event.object_ref.namespace": "kube-system",
				"k8s.audit.event.object_ref.name": "x", "k8s.audit.event.object_ref.api_version": "v1", "k8s.user.username": "system:admin",
				"k8s.audit.event.annotation.authorization.k8s.io/decision": "forbid",
				"k8s.audit.event.annotation.authorization.k8s.io/reason":   `a "quoted" reason`,
			} {
				if v, ok := attrs.Get(k); !ok || v.Str() != want {
					t.Errorf("attribute %s = %q (present %v), want %q", k, v.AsString(), ok, want)
				}
			}
			if v, ok := attrs.Get("k8s.audit.event.response.code"); !ok || v.Int() != 403 {
				t.Errorf("response.code %v", v.AsString())
			}
			if v, ok := attrs.Get("k8s.user.groups"); !ok || v.Type() != pcommon.ValueTypeSlice || v.Slice().Len() != 2 || v.Slice().At(1).Str() != "system:authenticated" {
				t.Errorf("groups %v", v.AsString())
			}
			switch body {
			case "string":
				if rec.Body().Str() != line {
					t.Errorf("body is not the line as read: %.80s", rec.Body().AsString())
				}
			case "map":
				// The map, rendered back to JSON by pdata, is the event.
				var got, want map[string]any
				json.Unmarshal([]byte(line), &want)
				if err := json.Unmarshal([]byte(rec.Body().AsString()), &got); err != nil {
					t.Fatalf("body as JSON: %v: %s", err, rec.Body().AsString())
				}
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(want)
				if string(gj) != string(wj) {
					t.Errorf("map body\n got %s\nwant %s", gj, wj)
				}
			}
			if bad := recs.At(1); bad.Body().Str() != "not json at all" || bad.SeverityText() != "INFO" {
				t.Errorf("an invalid line: body %q severity %q", bad.Body().AsString(), bad.SeverityText())
			}
		})
	}
}

func TestHeadersComeFromFilesAndAreReadAgainAfterA401(t *testing.T) {
	r := newReceiver(t)
	tok := filepath.Join(t.TempDir(), "auth")
	os.WriteFile(tok, []byte("Bearer one\n"), 0o600)
	o := r.newOutput(t, func(o *otlp.Options) { o.HeadersFiles = map[string]string{"Authorization": tok} })
	defer o.Close(context.Background())
	b, _ := outputstest.NewBatch(9, 3)
	r.push(answer{code: 401})
	if err := send(t, o, b); !outputs.IsPermanent(err) || !strings.Contains(err.Error(), "headers_files") {
		t.Fatalf("401: %v", err)
	}
	os.WriteFile(tok, []byte("Bearer two\n"), 0o600) // the Secret was rotated
	r.push(answer{code: 401})
	send(t, o, b)
	if err := send(t, o, b); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	auth := append([]string(nil), r.auth...)
	r.mu.Unlock()
	if auth[0] != "Bearer one" || auth[len(auth)-1] != "Bearer two" {
		t.Fatalf("Authorization sent: %v", auth)
	}
	if _, err := otlp.New(otlp.Options{Endpoint: r.srv.URL, Headers: map[string]string{"Authorization": "Bearer x"}}, nil); err == nil {
		t.Fatal("a credential in headers was accepted")
	}
}

func TestABatchOverMaxRequestBytesGoesInSeveralRequests(t *testing.T) {
	r := newReceiver(t)
	o := r.newOutput(t, func(o *otlp.Options) { o.MaxRequestBytes = 64 << 10 })
	defer o.Close(context.Background())
	b, ids := outputstest.NewBatch(11, 400)
	if err := send(t, o, b); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	requests := len(r.logs)
	r.mu.Unlock()
	if got := r.received(); requests < 2 || strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("%d requests, %d of %d events in order", requests, len(got), len(ids))
	}
	// The second request fails: the lines from it on come back to be sent
	// again, the first request's are not.
	r.mu.Lock()
	r.ids, r.logs = nil, nil
	r.mu.Unlock()
	r.push(answer{}, answer{code: 503})
	err := send(t, o, b)
	var pe *outputs.PartialError
	if !errors.As(err, &pe) || len(pe.Lines) == 0 || pe.Lines[len(pe.Lines)-1] != 399 || len(pe.Lines) >= 400 {
		t.Fatalf("second request failing: %v", err)
	}
	if first := len(r.received()); first+len(pe.Lines) != 400 {
		t.Fatalf("%d accepted + %d to resend != 400", first, len(pe.Lines))
	}
}

// A prepared batch is posted as prepared: its records' observed time is
// the time of Prepare, not of Send.
func TestAPreparedBatchIsPostedAsPrepared(t *testing.T) {
	r := newReceiver(t)
	o := r.newOutput(t, nil)
	defer o.Close(context.Background())
	b, _ := outputstest.NewBatch(5, 10)
	before := time.Now()
	o.Prepare(b)
	after := time.Now()
	time.Sleep(20 * time.Millisecond)
	if err := send(t, o, b); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	recs := r.logs[0].ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
	if recs.Len() != 10 {
		t.Fatalf("%d records, want 10", recs.Len())
	}
	if got := recs.At(0).ObservedTimestamp().AsTime(); got.Before(before) || got.After(after) {
		t.Fatalf("observed %s, want the time of Prepare (%s to %s)", got, before, after)
	}
}
