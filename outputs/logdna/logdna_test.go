package logdna

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/outputstest"
)

const testKey = "0123456789abcdef0123456789abcdef"

func keyFile(t testing.TB, key string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ingestion-key")
	if err := os.WriteFile(p, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newOutput(t *testing.T, r *receiver, mod func(*Options)) *Output {
	t.Helper()
	o := Options{URL: r.url(), IngestionKeyFile: keyFile(t, testKey), Hostname: "cp-1", Timeout: 5 * time.Second}
	if mod != nil {
		mod(&o)
	}
	out, err := New(o, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { out.Close(context.Background()) })
	return out
}

func send(o *Output, b *outputs.Batch) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return o.Send(ctx, b)
}

// batchOf makes a parsed batch of lines.
func batchOf(lines ...string) *outputs.Batch {
	b := &outputs.Batch{}
	for _, l := range lines {
		b.Append([]byte(l))
	}
	b.Parse(nil)
	return b
}

// expected computes what the receiver must see for one event, from
// encoding/json's reading of the event.
func expected(t *testing.T, line []byte) (ts int64, level string, meta map[string]any) {
	t.Helper()
	var ev struct {
		AuditID        *string `json:"auditID"`
		Verb           *string `json:"verb"`
		Stage          *string `json:"stage"`
		StageTimestamp string  `json:"stageTimestamp"`
		User           struct {
			Username *string `json:"username"`
		} `json:"user"`
		ObjectRef struct {
			Resource  *string `json:"resource"`
			Namespace *string `json:"namespace"`
		} `json:"objectRef"`
		ResponseStatus struct {
			Code int `json:"code"`
		} `json:"responseStatus"`
	}
	if err := json.Unmarshal(line, &ev); err != nil {
		t.Fatalf("test event is not JSON: %v", err)
	}
	st, err := time.Parse(time.RFC3339Nano, ev.StageTimestamp)
	if err != nil {
		t.Fatalf("stageTimestamp: %v", err)
	}
	meta = map[string]any{}
	for k, v := range map[string]*string{"auditID": ev.AuditID, "verb": ev.Verb, "stage": ev.Stage,
		"user": ev.User.Username, "resource": ev.ObjectRef.Resource, "namespace": ev.ObjectRef.Namespace} {
		if v != nil {
			meta[k] = *v
		}
	}
	level = "INFO"
	switch c := ev.ResponseStatus.Code; {
	case c >= 500:
		level = "ERROR"
	case c >= 400:
		level = "WARN"
	}
	if c := ev.ResponseStatus.Code; c != 0 {
		meta["code"] = float64(c)
	}
	return st.UnixMilli(), level, meta
}

func TestSendsTheDocumentedRequest(t *testing.T) {
	for _, compress := range []string{"gzip", "none"} {
		t.Run("compress "+compress, func(t *testing.T) {
			r := newReceiver(t, testKey)
			o := newOutput(t, r, func(o *Options) {
				o.Compress = compress
				o.Tags = []string{"k8s-audit", "prod"}
				o.MAC, o.IP = "01:02:03:04:ab:cd", "10.0.1.111"
				o.App = "audit \"cp\""
				o.UserAgent = "audittail/v1.2.3"
			})
			b, ids := outputstest.NewBatch(7, 300)
			// Escapes, non-ASCII and a line that is not an audit event.
			odd := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a\u0062c-1","stage":"ResponseComplete",` +
				`"requestURI":"/api/v1/namespaces/t\u00e9st/pods?x=\"y\"","verb":"get","user":{"username":"ali\"ce\\\u00e9 \u2028 ☃","groups":[]},` +
				`"objectRef":{"resource":"pods","namespace":"tést","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":503},` +
				`"requestReceivedTimestamp":"2026-11-23T10:54:44.600000Z","stageTimestamp":"2026-11-23T11:54:44.671393+01:00"}`
			b.Append([]byte(odd))
			b.Append([]byte(`this is not JSON "at all"`))
			b.Parse(nil)
			ids = append(ids, "abc-1")

			before := time.Now().UnixMilli()
			if err := send(o, b); err != nil {
				t.Fatalf("Send: %v", err)
			}
			after := time.Now().UnixMilli()

			reqs := r.got()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			q := reqs[0]
			if q.Method != "POST" || q.Path != "/logs/ingest" {
				t.Errorf("request %s %s, want POST /logs/ingest", q.Method, q.Path)
			}
			if !q.AuthOK || q.User != testKey || q.Password != "" {
				t.Errorf("basic auth = %v %q %q, want the key as user and no password", q.AuthOK, q.User, q.Password)
			}
			if q.ContentType != "application/json; charset=UTF-8" {
				t.Errorf("Content-Type %q", q.ContentType)
			}
			if want := map[string]string{"gzip": "gzip", "none": ""}[compress]; q.ContentEncoding != want {
				t.Errorf("Content-Encoding %q, want %q", q.ContentEncoding, want)
			}
			if q.UserAgent != "audittail/v1.2.3" {
				t.Errorf("User-Agent %q", q.UserAgent)
			}
			for k, want := range map[string]string{"hostname": "cp-1", "tags": "k8s-audit,prod", "mac": "01:02:03:04:ab:cd", "ip": "10.0.1.111"} {
				if got := q.Query[k]; len(got) != 1 || got[0] != want {
					t.Errorf("query %s = %q, want %q", k, got, want)
				}
			}
			now, err := strconv.ParseInt(strings.Join(q.Query["now"], ""), 10, 64)
			if err != nil || now < before || now > after {
				t.Errorf("now = %q, want unix ms in [%d, %d]", q.Query["now"], before, after)
			}
			if len(q.Lines) != b.Len() {
				t.Fatalf("%d lines, want %d", len(q.Lines), b.Len())
			}
			for i, l := range q.Lines {
				raw := b.Line(i)
				if l.Line != string(raw) {
					t.Fatalf("line %d: line field differs from the raw event:\n got %s\nwant %s", i, l.Line, raw)
				}
				if l.App != `audit "cp"` {
					t.Errorf("line %d: app %q", i, l.App)
				}
				if i == b.Len()-1 { // not an audit event
					if l.Level != "INFO" || l.Meta != nil || l.Timestamp < before || l.Timestamp > after {
						t.Errorf("invalid line sent as %+v, want level INFO, no meta, timestamp now", l)
					}
					continue
				}
				ts, level, meta := expected(t, raw)
				if l.Timestamp != ts {
					t.Errorf("line %d: timestamp %d, want %d", i, l.Timestamp, ts)
				}
				if l.Level != level {
					t.Errorf("line %d: level %s, want %s", i, l.Level, level)
				}
				if !mapsEqual(l.Meta, meta) {
					t.Errorf("line %d: meta %v, want %v", i, l.Meta, meta)
				}
			}
			if got := r.received(); !slices.Equal(got, ids) {
				t.Errorf("received %d auditIDs, want the %d sent in order", len(got), len(ids))
			}
		})
	}
}

func mapsEqual(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestClassifiesAnswers(t *testing.T) {
	r := newReceiver(t, testKey)
	o := newOutput(t, r, nil)
	type want struct {
		permanent  bool
		retryAfter time.Duration // 0: no RetryAfterError
		partial    []int
		rejected   []int
		inError    string
	}
	lineStatus := func(m map[int]int) func(int, wireLine) int {
		return func(i int, _ wireLine) int {
			if c, ok := m[i]; ok {
				return c
			}
			return 200
		}
	}
	httpDate := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name string
		a    answer
		want want
	}{
		{"accepts a 200", answer{code: 200}, want{}},
		{"accepts a 202", answer{code: 202}, want{}},
		{"retries a 429 after its Retry-After", answer{code: 429, body: "slow down", header: map[string]string{"Retry-After": "7"}}, want{retryAfter: 7 * time.Second, inError: "slow down"}},
		{"retries a 503 after its Retry-After date", answer{code: 503, header: map[string]string{"Retry-After": httpDate}}, want{retryAfter: 90 * time.Second}},
		{"caps a huge Retry-After", answer{code: 429, header: map[string]string{"Retry-After": "86400"}}, want{retryAfter: maxRetryAfter}},
		{"retries a 429 without Retry-After", answer{code: 429}, want{}},
		{"retries a 500", answer{code: 500, body: "boom"}, want{inError: "boom"}},
		{"retries a 502", answer{code: 502}, want{}},
		{"retries a 408", answer{code: 408}, want{}},
		{"does not retry a 501", answer{code: 501}, want{permanent: true}},
		{"does not retry a 400 and quotes its body", answer{code: 400, body: `{"error":"lines[3] is not valid"}`}, want{permanent: true, inError: `lines[3] is not valid`}},
		{"retries a 401 slowly: the key, not the events, is wrong", answer{code: 401, body: "invalid key"}, want{retryAfter: time.Minute, inError: "invalid key"}},
		{"retries a 403 slowly", answer{code: 403, body: "forbidden here"}, want{retryAfter: time.Minute, inError: "forbidden here"}},
		{"does not retry a 413", answer{code: 413}, want{permanent: true}},
		{"does not follow a redirect, retries slowly", answer{code: 302, header: map[string]string{"Location": "/elsewhere"}}, want{retryAfter: time.Minute, inError: "/elsewhere"}},
		{"resends only the lines a 207 failed", answer{status: lineStatus(map[int]int{1: 500, 4: 429})}, want{partial: []int{1, 4}}},
		{"rejects only the lines a 207 rejected", answer{status: lineStatus(map[int]int{2: 400})}, want{rejected: []int{2}}},
		{"resends failed and rejected lines of a mixed 207", answer{status: lineStatus(map[int]int{0: 400, 3: 503})}, want{partial: []int{0, 3}}},
		{"accepts a 207 that fails nothing", answer{status: lineStatus(nil)}, want{}},
		{"retries everything after an unreadable 207", answer{code: 207, body: "<html>"}, want{inError: "<html>"}},
		{"retries everything after a 207 with the wrong count", answer{code: 207, body: `{"status":[200]}`}, want{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.reset()
			r.then(tc.a)
			b, _ := outputstest.NewBatch(3, 6)
			err := send(o, b)
			w := tc.want
			if w.inError != "" && (err == nil || !strings.Contains(err.Error(), w.inError)) {
				t.Errorf("error %v does not quote %q", err, w.inError)
			}
			if err != nil {
				if !strings.Contains(err.Error(), r.srv.Listener.Addr().String()) {
					t.Errorf("error %q does not name the endpoint", err)
				}
				if strings.Contains(err.Error(), testKey) {
					t.Errorf("error %q shows the key", err)
				}
			}
			if outputs.IsPermanent(err) != w.permanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, outputs.IsPermanent(err), w.permanent)
			}
			var ra *outputs.RetryAfterError
			if errors.As(err, &ra) != (w.retryAfter != 0) {
				t.Errorf("RetryAfterError in %v: %v, want %v", err, errors.As(err, &ra), w.retryAfter != 0)
			} else if ra != nil && (ra.After > w.retryAfter || ra.After < w.retryAfter-2*time.Second) {
				t.Errorf("Retry-After %s, want %s", ra.After, w.retryAfter)
			}
			var pe *outputs.PartialError
			if errors.As(err, &pe) != (w.partial != nil) || pe != nil && !slices.Equal(pe.Lines, w.partial) {
				t.Errorf("Send = %v, want PartialError for lines %v", err, w.partial)
			}
			var re *outputs.RejectedError
			if errors.As(err, &re) != (w.rejected != nil) || re != nil && !slices.Equal(re.Lines, w.rejected) {
				t.Errorf("Send = %v, want RejectedError for lines %v", err, w.rejected)
			}
			if tc.a.code == 200 || tc.a.code == 202 || (tc.a.status != nil && w.partial == nil && w.rejected == nil) {
				if err != nil {
					t.Errorf("Send = %v, want nil", err)
				}
			} else if err == nil {
				t.Error("Send = nil, want an error")
			}
		})
	}
}

func TestReadsTheKey(t *testing.T) {
	r := newReceiver(t, testKey)
	t.Run("from a file", func(t *testing.T) {
		o := newOutput(t, r, nil)
		b, _ := outputstest.NewBatch(1, 3)
		if err := send(o, b); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("from an environment variable", func(t *testing.T) {
		t.Setenv("AUDITTAIL_TEST_LOGDNA_KEY", " "+testKey+"\n")
		o := newOutput(t, r, func(o *Options) { o.IngestionKeyFile, o.IngestionKeyEnv = "", "AUDITTAIL_TEST_LOGDNA_KEY" })
		b, _ := outputstest.NewBatch(1, 3)
		if err := send(o, b); err != nil {
			t.Fatal(err)
		}
	})
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	unreadable := t.TempDir() // a directory cannot be read as a file
	for _, tc := range []struct {
		name      string
		file, env string
		wantInErr string
	}{
		{"a missing key file is an error naming ingestion_key_file", "/nonexistent/key", "", "ingestion_key_file"},
		{"an unreadable key file is an error naming ingestion_key_file", unreadable, "", "ingestion_key_file"},
		{"an empty key file is an error naming ingestion_key_file", empty, "", "ingestion_key_file"},
		{"an unset variable is an error naming ingestion_key_env", "", "AUDITTAIL_TEST_UNSET_VARIABLE", "ingestion_key_env"},
		{"no key at all is an error", "", "", "ingestion_key_file or ingestion_key_env"},
		{"two keys are an error", empty, "X", "set only one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Options{URL: r.url(), IngestionKeyFile: tc.file, IngestionKeyEnv: tc.env}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantInErr) {
				t.Fatalf("New = %v, want an error naming %s", err, tc.wantInErr)
			}
		})
	}
}

func TestRetriesWithARotatedKey(t *testing.T) {
	r := newReceiver(t, "new-key-456")
	path := keyFile(t, "old-key-123")
	o := newOutput(t, r, func(o *Options) { o.IngestionKeyFile = path })
	b, ids := outputstest.NewBatch(2, 5)
	err := send(o, b)
	var ra *outputs.RetryAfterError
	if err == nil || outputs.IsPermanent(err) || !errors.As(err, &ra) || strings.Contains(err.Error(), "old-key-123") {
		t.Fatalf("Send with a wrong key = %v, want a slow retry that does not show the key", err)
	}
	os.WriteFile(path, []byte("new-key-456\n"), 0o600) // the Secret is updated
	err = send(o, b)
	if err == nil || outputs.IsPermanent(err) {
		t.Fatalf("Send after the key changed = %v, want a retryable error", err)
	}
	if err := send(o, b); err != nil {
		t.Fatalf("Send with the new key: %v", err)
	}
	if got := r.received(); !slices.Equal(got, ids) {
		t.Fatalf("received %v, want %v", got, ids)
	}
}

func TestSplitsABatchUnderMaxRequestBytes(t *testing.T) {
	r := newReceiver(t, testKey)
	const max = 100 << 10
	o := newOutput(t, r, func(o *Options) { o.MaxRequestBytes = max; o.LineLimit = 4096 })
	b, ids := outputstest.NewBatch(5, 600)
	if err := send(o, b); err != nil {
		t.Fatal(err)
	}
	reqs := r.got()
	if len(reqs) < 3 {
		t.Fatalf("%d requests, want the batch split into several", len(reqs))
	}
	for i, q := range reqs {
		if q.BodyBytes > max {
			t.Errorf("request %d has %d bytes, over max_request_bytes %d", i, q.BodyBytes, max)
		}
	}
	if got := r.received(); !slices.Equal(got, ids) {
		t.Fatalf("received %d events, want the %d sent, in order", len(got), len(ids))
	}

	t.Run("resends the requests after a failed one", func(t *testing.T) {
		r.reset()
		r.then(answer{code: 200}, answer{code: 503, header: map[string]string{"Retry-After": "3"}})
		err := send(o, b)
		var pe *outputs.PartialError
		if !errors.As(err, &pe) {
			t.Fatalf("Send = %v, want PartialError", err)
		}
		var ra *outputs.RetryAfterError
		if !errors.As(err, &ra) || ra.After != 3*time.Second {
			t.Errorf("Send = %v, want it to carry Retry-After 3s", err)
		}
		got := r.received()
		if len(got)+len(pe.Lines) != len(ids) || !slices.Equal(got, ids[:len(got)]) || pe.Lines[0] != len(got) {
			t.Fatalf("accepted %d, PartialError lines %d..: want the rest after the accepted prefix", len(got), pe.Lines[0])
		}
		if len(r.got()) != 2 {
			t.Errorf("%d requests, want none after the failed one", len(r.got()))
		}
	})
	t.Run("rejects the lines of a request answered 400 and sends the others", func(t *testing.T) {
		r.reset()
		r.then(answer{code: 200}, answer{code: 400, body: "bad"})
		err := send(o, b)
		var re *outputs.RejectedError
		if !errors.As(err, &re) {
			t.Fatalf("Send = %v, want RejectedError", err)
		}
		first := len(r.got()[0].Lines)
		second := len(r.got()[1].Lines)
		want := make([]int, second)
		for i := range want {
			want[i] = first + i
		}
		if !slices.Equal(re.Lines, want) {
			t.Errorf("rejected %v, want the second request's lines %d..%d", re.Lines, first, first+second-1)
		}
		if got := r.received(); len(got) != len(ids)-second {
			t.Errorf("received %d, want every event but the rejected %d", len(got), second)
		}
	})
	t.Run("keeps everything after a 401 for a later retry, without sending more", func(t *testing.T) {
		r.reset()
		r.then(answer{code: 200}, answer{code: 401, body: "no"})
		err := send(o, b)
		var pe *outputs.PartialError
		if !errors.As(err, &pe) || len(pe.Lines) != len(ids)-len(r.received()) || outputs.IsPermanent(err) {
			t.Fatalf("Send = %v, want PartialError for every line not accepted", err)
		}
		if len(r.got()) != 2 {
			t.Errorf("%d requests, want none after the 401", len(r.got()))
		}
	})
}

// bigEvent returns an event with a requestObject and a responseObject of
// about the given sizes.
func bigEvent(id string, req, resp int, annotations string) string {
	pad := func(n int) string { return strings.Repeat("x", n) }
	s := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"` + id + `","stage":"ResponseComplete",` +
		`"requestURI":"/api/v1/namespaces/default/configmaps","verb":"create","user":{"username":"alice"},` +
		`"objectRef":{"resource":"configmaps","namespace":"default","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201}`
	if req > 0 {
		s += `,"requestObject":{"kind":"ConfigMap","data":{"k":"` + pad(req) + `"}}`
	}
	if resp > 0 {
		s += `,"responseObject":{"kind":"ConfigMap","data":{"k":"` + pad(resp) + `"}}`
	}
	s += `,"requestReceivedTimestamp":"2026-11-23T10:54:44.600000Z","stageTimestamp":"2026-11-23T10:54:44.671393Z"`
	if annotations != "" {
		s += `,"annotations":` + annotations
	}
	return s + "}"
}

func TestCutsObjectsOverLineLimit(t *testing.T) {
	r := newReceiver(t, testKey)
	o := newOutput(t, r, func(o *Options) { o.LineLimit = 4000 })
	b := batchOf(
		bigEvent("small", 100, 100, `{"authorization.k8s.io/decision":"allow"}`),
		bigEvent("big-response", 500, 6000, `{"authorization.k8s.io/decision":"allow"}`),
		bigEvent("big-both", 4000, 6000, ``),
		bigEvent("hopeless", 10, 10, `{"note":"`+strings.Repeat("y", 5000)+`"}`),
		bigEvent("big-request", 9000, 0, `{}`),
	)
	err := send(o, b)
	var re *outputs.RejectedError
	if !errors.As(err, &re) || !slices.Equal(re.Lines, []int{3}) {
		t.Fatalf("Send = %v, want RejectedError for line 3 only", err)
	}
	got := r.accepted()
	if len(got) != 4 {
		t.Fatalf("accepted %d lines, want 4", len(got))
	}
	wantCut := map[string]string{"small": "", "big-response": "responseObject", "big-both": "requestObject,responseObject", "big-request": "requestObject"}
	for i, l := range got {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l.Line), &ev); err != nil {
			t.Fatalf("line %d is not valid JSON after cutting: %v\n%s", i, err, l.Line)
		}
		id := ev["auditID"].(string)
		cut := wantCut[id]
		var orig map[string]any
		json.Unmarshal(b.Line(slices.Index([]string{"small", "big-response", "big-both", "hopeless", "big-request"}, id)), &orig)
		if cut == "" {
			if l.Line != string(b.Line(0)) {
				t.Errorf("%s was changed although under the limit", id)
			}
			continue
		}
		if len(l.Line) > 4000 {
			t.Errorf("%s: %d bytes after cutting, over line_limit", id, len(l.Line))
		}
		ann, _ := ev["annotations"].(map[string]any)
		if ann[TruncatedAnnotation] != cut {
			t.Errorf("%s: annotation %v, want %q", id, ann[TruncatedAnnotation], cut)
		}
		delete(ann, TruncatedAnnotation)
		for _, k := range strings.Split(cut, ",") {
			if _, ok := ev[k]; ok {
				t.Errorf("%s: %s still there", id, k)
			}
			delete(orig, k)
		}
		if len(ann) == 0 {
			delete(ev, "annotations")
			if oa, ok := orig["annotations"].(map[string]any); ok && len(oa) == 0 {
				delete(orig, "annotations")
			}
		}
		a, _ := json.Marshal(ev)
		w, _ := json.Marshal(orig)
		if string(a) != string(w) {
			t.Errorf("%s: other fields changed:\n got %s\nwant %s", id, a, w)
		}
	}
	if n := o.Truncated(); n != 3 {
		t.Errorf("Truncated() = %d, want 3", n)
	}
}

func TestCutObjectsKeepsJSONValid(t *testing.T) {
	obj := `{"a":[1,{"b":"}"}]}`
	for _, line := range []string{
		`{"requestObject":` + obj + `,"responseObject":` + obj + `}`,
		`{"requestObject":` + obj + `,"responseObject":` + obj + `,"annotations":{}}`,
		`{ "responseObject" : ` + obj + ` , "auditID":"x" , "requestObject":` + obj + ` }`,
		`{"auditID":"x","requestObject":` + obj + `,"annotations":{"k":"v"},"responseObject":` + obj + `}`,
		`{"annotations":{ },"requestObject":` + obj + `}`,
		`{"responseObject":` + obj + `}`,
		"{\n\t\"requestObject\": " + obj + ",\n\t\"responseObject\": " + obj + "\n}",
	} {
		b := batchOf(line)
		ev := b.Event(0)
		if ev == nil {
			t.Fatalf("test line does not parse: %s", line)
		}
		got, _ := outputs.CutObjects(nil, b.Line(0), ev, 10)
		var m map[string]any
		if err := json.Unmarshal(got, &m); err != nil {
			t.Errorf("cutting %s gave invalid JSON %s: %v", line, got, err)
			continue
		}
		if _, ok := m["requestObject"]; ok {
			t.Errorf("cutting %s kept requestObject: %s", line, got)
		}
		if _, ok := m["responseObject"]; ok {
			t.Errorf("cutting %s kept responseObject: %s", line, got)
		}
		ann, _ := m["annotations"].(map[string]any)
		if ann == nil || ann[TruncatedAnnotation] == nil {
			t.Errorf("cutting %s added no annotation: %s", line, got)
		}
	}
}

func TestVerifiesTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, _, _ := r.BasicAuth(); u != testKey {
			w.WriteHeader(401)
		}
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	mk := func(tlsOpts TLSOptions) *Output {
		o, err := New(Options{URL: srv.URL + "/logs/ingest", IngestionKeyFile: keyFile(t, testKey), TLS: tlsOpts}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { o.Close(context.Background()) })
		return o
	}
	b, _ := outputstest.NewBatch(1, 2)
	if err := send(mk(TLSOptions{}), b); err == nil || outputs.IsPermanent(err) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Send to an unknown CA = %v, want a retryable certificate error", err)
	}
	if err := send(mk(TLSOptions{CAFile: ca}), b); err != nil {
		t.Errorf("Send with tls.ca_file: %v", err)
	}
	if err := send(mk(TLSOptions{InsecureSkipVerify: true}), b); err != nil {
		t.Errorf("Send with tls.insecure_skip_verify: %v", err)
	}
	if err := mk(TLSOptions{CAFile: ca}).Check(context.Background()); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestCheck(t *testing.T) {
	r := newReceiver(t, testKey)
	o := newOutput(t, r, nil)
	if err := o.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if q := r.got(); len(q) != 1 || len(q[0].Lines) != 0 || len(r.received()) != 0 {
		t.Fatalf("Check sent %+v, want one empty batch", q)
	}
	bad := newOutput(t, r, func(o *Options) { o.IngestionKeyFile = keyFile(t, "wrong") })
	err := bad.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "ingestion key") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("Check with a wrong key = %v, want a 401 error about the key that does not show it", err)
	}
}

func TestHonoursContextAndTimeout(t *testing.T) {
	r := newReceiver(t, testKey)
	o := newOutput(t, r, func(o *Options) { o.Timeout = 300 * time.Millisecond })
	b, _ := outputstest.NewBatch(1, 2)
	r.then(answer{code: 200, delay: 5 * time.Second})
	start := time.Now()
	err := send(o, b)
	if err == nil || outputs.IsPermanent(err) || time.Since(start) > 3*time.Second {
		t.Fatalf("Send to a server slower than timeout = %v after %s, want a retryable error at once", err, time.Since(start))
	}

	o = newOutput(t, r, nil)
	r.reset()
	r.then(answer{code: 200, delay: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	err = o.Send(ctx, b)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
		t.Fatalf("Send with a cancelled context = %v after %s, want context.DeadlineExceeded at once", err, time.Since(start))
	}
}

func TestDecodesConfig(t *testing.T) {
	keyPath := keyFile(t, testKey)
	decode := func(src string) (*Output, error) {
		var c outputs.Config
		if err := yaml.Unmarshal([]byte(src), &c); err != nil {
			return nil, err
		}
		return FromConfig(c, nil)
	}
	o, err := decode(`
name: mezmo
type: logdna
url: https://logs.eu-de.logging.cloud.ibm.com/logs/ingest
ingestion_key_file: ` + keyPath + `
hostname: cp-1
tags: [k8s-audit, prod]
app: audit
compress: gzip
compress_level: 6
max_request_bytes: 4MiB
line_limit: 16KiB
timeout: 10s
tls:
  ca_file: ""
  insecure_skip_verify: false
`)
	if err != nil {
		t.Fatalf("FromConfig: %v", err)
	}
	if o.maxBody != 4<<20 || o.enc.lineLimit != 16<<10 || o.timeout != 10*time.Second || o.host != "logs.eu-de.logging.cloud.ibm.com" {
		t.Errorf("decoded max %d, line limit %d, timeout %s, host %s", o.maxBody, o.enc.lineLimit, o.timeout, o.host)
	}
	for _, tc := range []struct{ src, want string }{
		{"type: logdna\nurl: https://x/logs/ingest\ningestion_key_file: " + keyPath + "\ningestion_key: abc\n", `unknown key "ingestion_key"`},
		{"type: logdna\nurl: https://x/logs/ingest\ningestion_key_file: " + keyPath + "\ntls:\n  ca: x\n", `unknown key "tls.ca"`},
		{"type: logdna\ningestion_key_file: " + keyPath + "\n", "url: required"},
		{"type: logdna\nurl: https://user:pw@x/logs/ingest\ningestion_key_file: " + keyPath + "\n", "url: must not hold credentials"},
		{"type: logdna\nurl: ftp://x/\ningestion_key_file: " + keyPath + "\n", "url:"},
		{"type: logdna\nurl: https://x/\ningestion_key_file: " + keyPath + "\ncompress: zstd\n", "compress: invalid"},
		{"type: logdna\nurl: https://x/\ningestion_key_file: " + keyPath + "\nmax_request_bytes: 10KiB\n", "max_request_bytes:"},
		{"type: logdna\nurl: https://x/\ningestion_key_file: " + keyPath + "\nline_limit: 12\n", "line_limit:"},
		{"type: logdna\nurl: https://x/\ningestion_key_file: " + keyPath + "\nline_limit: lots\n", "invalid size"},
	} {
		if _, err := decode(tc.src); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config\n%s\ngave %v, want an error with %q", tc.src, err, tc.want)
		}
	}
}

func TestConformance(t *testing.T) {
	r := newReceiver(t, testKey)
	outputstest.Run(t, outputstest.Harness{
		New: func(t *testing.T) outputs.Output {
			o, err := New(Options{URL: r.url(), IngestionKeyFile: keyFile(t, testKey), Hostname: "cp-1"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return o
		},
		Received:      r.received,
		FailTransient: func(n int) { r.then(codes(503, n)...) },
		FailPermanent: func(n int) { r.then(codes(400, n)...) },
		Reset:         r.reset,
	})
}
