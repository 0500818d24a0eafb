package ibmcloudlogs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/outputstest"
)

const testKey = "ibm-api-key-0123456789abcdefABCDEF"

func keyFile(t testing.TB, key string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ibm-api-key")
	if err := os.WriteFile(p, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func options(t testing.TB, r *receiver) Options {
	return Options{
		Endpoint:     r.endpoint(),
		IAMEndpoint:  r.iamEndpoint(),
		APIKeyFile:   keyFile(t, testKey),
		ComputerName: "cp-1",
		Timeout:      5 * time.Second,
	}
}

func newOutput(t *testing.T, r *receiver, mod func(*Options)) *Output {
	t.Helper()
	o := options(t, r)
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

// expected computes the severity and timestamp the receiver must see for
// one event, from encoding/json's reading of the event.
func expected(t *testing.T, line []byte) (severity int, ts int64) {
	t.Helper()
	var ev struct {
		StageTimestamp           string `json:"stageTimestamp"`
		RequestReceivedTimestamp string `json:"requestReceivedTimestamp"`
		ResponseStatus           struct {
			Code int `json:"code"`
		} `json:"responseStatus"`
	}
	if err := json.Unmarshal(line, &ev); err != nil {
		t.Fatalf("test event is not JSON: %v", err)
	}
	raw := ev.StageTimestamp
	if raw == "" {
		raw = ev.RequestReceivedTimestamp
	}
	st, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		t.Fatalf("timestamp: %v", err)
	}
	severity = 3
	switch c := ev.ResponseStatus.Code; {
	case c >= 500:
		severity = 5
	case c >= 400:
		severity = 4
	}
	return severity, st.UnixMilli()
}

func TestSendsTheDocumentedRequest(t *testing.T) {
	r := newReceiver(t, testKey)
	o := newOutput(t, r, func(o *Options) {
		o.ApplicationName = `k8s "prod"`
		o.SubsystemName = "audit-é"
		o.UserAgent = "audittail/v1.2.3"
	})
	b, ids := outputstest.NewBatch(7, 300)
	// Escapes, non-ASCII, a 503, no stageTimestamp, and a JSON line that is
	// not an audit event.
	odd := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a\u0062c-1","stage":"ResponseComplete",` +
		`"requestURI":"/api/v1/namespaces/t\u00e9st/pods?x=\"y\"","verb":"get","user":{"username":"ali\"ce\\\u00e9 \u2028 ☃","groups":[]},` +
		`"objectRef":{"resource":"pods","namespace":"tést","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":503},` +
		`"requestReceivedTimestamp":"2026-11-23T10:54:44.600000Z","stageTimestamp":"2026-11-23T11:54:44.671393+01:00"}`
	noStage := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"no-stage","stage":"RequestReceived",` +
		`"verb":"get","responseStatus":{"code":404},"requestReceivedTimestamp":"2026-11-23T10:54:45.123456Z"}`
	b.Append([]byte(odd))
	b.Append([]byte(noStage))
	b.Append([]byte(`{"hello":"world"}`))
	b.Parse(nil)
	ids = append(ids, "abc-1", "no-stage", "")

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
	if q.Method != "POST" || q.Path != "/logs/v1/singles" {
		t.Errorf("request %s %s, want POST /logs/v1/singles", q.Method, q.Path)
	}
	if q.UserAgent != "audittail/v1.2.3" {
		t.Errorf("User-Agent %q", q.UserAgent)
	}
	if len(q.Entries) != b.Len() {
		t.Fatalf("%d entries, want %d", len(q.Entries), b.Len())
	}
	seen := map[int]bool{}
	for i, e := range q.Entries {
		raw := b.Line(i)
		if e.Text != string(raw) {
			t.Fatalf("entry %d: text differs from the raw event:\n got %s\nwant %s", i, e.Text, raw)
		}
		if e.ApplicationName != `k8s "prod"` || e.SubsystemName != "audit-é" || e.ComputerName != "cp-1" {
			t.Errorf("entry %d: applicationName %q, subsystemName %q, computerName %q", i, e.ApplicationName, e.SubsystemName, e.ComputerName)
		}
		if i == b.Len()-1 { // not an audit event
			if e.Severity != 3 || int64(e.Timestamp) < before || int64(e.Timestamp) > after {
				t.Errorf("non-event sent with severity %d, timestamp %v: want 3 and the time of sending", e.Severity, e.Timestamp)
			}
			continue
		}
		sev, ts := expected(t, raw)
		seen[sev] = true
		if e.Severity != sev {
			t.Errorf("entry %d: severity %d, want %d", i, e.Severity, sev)
		}
		if e.Timestamp != float64(ts) {
			t.Errorf("entry %d: timestamp %v, want %d", i, e.Timestamp, ts)
		}
	}
	if !seen[3] || !seen[4] || !seen[5] {
		t.Errorf("severities seen %v: the test wants 3, 4 and 5", seen)
	}
	if got := r.received(); !slices.Equal(got, ids) {
		t.Errorf("received %d auditIDs, want the %d sent in order", len(got), len(ids))
	}
	if calls, _ := r.counts(); calls != 1 {
		t.Errorf("%d token requests, want 1", calls)
	}
}

func TestCachesTheToken(t *testing.T) {
	r := newReceiver(t, testKey)
	o := newOutput(t, r, nil)
	for i := range 5 {
		b, _ := outputstest.NewBatch(uint64(i), 10)
		if err := send(o, b); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	if calls, _ := r.counts(); calls != 1 {
		t.Errorf("%d token requests for 5 Sends with an hour-long token, want 1", calls)
	}
	if err := o.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls, _ := r.counts(); calls != 1 {
		t.Errorf("%d token requests after Check, want the cached token used", calls)
	}
}

func TestRefreshAfter(t *testing.T) {
	for _, tc := range []struct{ lifetime, want time.Duration }{
		{time.Hour, 48 * time.Minute},        // 20% of the lifetime remains first
		{20 * time.Minute, 15 * time.Minute}, // five minutes remain first
		{2 * time.Second, time.Second},       // short-lived: half its life
	} {
		if got := refreshAfter(tc.lifetime); got != tc.want {
			t.Errorf("refreshAfter(%s) = %s, want %s", tc.lifetime, got, tc.want)
		}
	}
}

func TestRefreshesAnExpiringToken(t *testing.T) {
	r := newReceiver(t, testKey)
	r.setTTL(2 * time.Second)
	o := newOutput(t, r, nil)
	b, ids := outputstest.NewBatch(1, 20)
	if err := send(o, b); err != nil {
		t.Fatalf("Send: %v", err)
	}
	time.Sleep(2500 * time.Millisecond) // the token has expired
	b2, ids2 := outputstest.NewBatch(2, 20)
	if err := send(o, b2); err != nil {
		t.Fatalf("Send after the token expired: %v", err)
	}
	if calls, issued := r.counts(); calls < 2 || issued < 2 {
		t.Errorf("IAM saw %d token requests (%d issued), want at least 2", calls, issued)
	}
	if n := r.unauthorized(); n != 0 {
		t.Errorf("%d requests answered 401: the token was not replaced before it expired", n)
	}
	if got := r.received(); !slices.Equal(got, append(ids, ids2...)) {
		t.Errorf("received %d events, want the %d sent", len(got), len(ids)+len(ids2))
	}
	for _, q := range r.got() {
		if q.Token == "" {
			t.Error("a request went without a token")
		}
	}
}

func TestRefreshesTheTokenAfterA401(t *testing.T) {
	r := newReceiver(t, testKey)
	o := newOutput(t, r, nil)
	b, ids := outputstest.NewBatch(1, 10)
	if err := send(o, b); err != nil {
		t.Fatal(err)
	}
	r.revoke() // the endpoint no longer takes the cached token
	if err := send(o, b); err != nil {
		t.Fatalf("Send after the token was revoked: %v", err)
	}
	if _, issued := r.counts(); issued != 2 || r.unauthorized() != 1 {
		t.Errorf("%d tokens issued after %d 401s, want a second one after the 401", issued, r.unauthorized())
	}
	if got := r.received(); !slices.Equal(got, append(ids, ids...)) {
		t.Errorf("received %d events, want both sends' %d", len(got), 2*len(ids))
	}

	t.Run("a 401 to a new token too is retryable and says so", func(t *testing.T) {
		srv := newReceiver(t, testKey)
		o := newOutput(t, srv, func(o *Options) { o.IAMEndpoint = r.iamEndpoint() }) // tokens the endpoint does not know
		err := send(o, b)
		if err == nil || outputs.IsPermanent(err) || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), srv.host()) {
			t.Fatalf("Send = %v, want a retryable 401 error naming the endpoint", err)
		}
		if calls, _ := r.counts(); calls != 4 {
			t.Errorf("IAM saw %d token requests, want 2 more (one new token after the 401)", calls)
		}
	})
}

func TestUsesARotatedKeyAfterA401(t *testing.T) {
	r := newReceiver(t, "old-key-123")
	path := keyFile(t, "old-key-123")
	o := newOutput(t, r, func(o *Options) { o.APIKeyFile = path })
	b, ids := outputstest.NewBatch(2, 5)
	if err := send(o, b); err != nil {
		t.Fatal(err)
	}
	// The key is rotated: IAM takes only the new one, the old tokens are
	// revoked, and the Secret is updated.
	r.setKey("new-key-456")
	r.revoke()
	if err := os.WriteFile(path, []byte("new-key-456\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := send(o, b); err != nil {
		t.Fatalf("Send after the key was rotated: %v", err)
	}
	if got := r.received(); !slices.Equal(got, append(ids, ids...)) {
		t.Fatalf("received %v, want %v twice", got, ids)
	}
}

func TestKeepsTheKeyWhenItsFileVanishes(t *testing.T) {
	r := newReceiver(t, testKey)
	var buf bytes.Buffer
	opts := options(t, r)
	o, err := New(opts, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	if err := os.Remove(opts.APIKeyFile); err != nil {
		t.Fatal(err)
	}
	b, ids := outputstest.NewBatch(1, 3)
	if err := send(o, b); err != nil {
		t.Fatalf("Send with the key file gone since New: %v", err)
	}
	if !slices.Equal(r.received(), ids) || !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), opts.APIKeyFile) {
		t.Errorf("received %v, logged %q: want the events sent with the key read at start, and a warning naming the file", r.received(), buf.String())
	}
}

func TestReportsARefusedKey(t *testing.T) {
	r := newReceiver(t, testKey)
	path := keyFile(t, "wrong-key-789")
	o := newOutput(t, r, func(o *Options) { o.APIKeyFile = path })
	b, ids := outputstest.NewBatch(3, 5)
	err := send(o, b)
	var ra *outputs.RetryAfterError
	if err == nil || outputs.IsPermanent(err) || !errors.As(err, &ra) || ra.After != time.Minute {
		t.Fatalf("Send with a wrong key = %v, want a retry after a minute", err)
	}
	for _, want := range []string{"api_key_file", path, r.host(), "400"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "wrong-key-789") {
		t.Errorf("error %q shows the key", err)
	}
	if len(r.got()) != 0 {
		t.Errorf("%d ingestion requests without a token", len(r.got()))
	}
	if err := o.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "api_key_file") || strings.Contains(err.Error(), "wrong-key-789") {
		t.Errorf("Check with a wrong key = %v, want an error naming api_key_file without the key", err)
	}
	// The Secret is fixed: the next token request reads it.
	os.WriteFile(path, []byte(testKey), 0o600)
	if err := send(o, b); err != nil {
		t.Fatalf("Send after the key file was fixed: %v", err)
	}
	if got := r.received(); !slices.Equal(got, ids) {
		t.Fatalf("received %v, want %v", got, ids)
	}
}

func TestClassifiesIAMFailures(t *testing.T) {
	r := newReceiver(t, testKey)
	for _, tc := range []struct {
		name       string
		a          answer
		retryAfter time.Duration
		inError    string
	}{
		{"retries a 503", answer{code: 503, body: "iam down"}, 0, "iam down"},
		{"retries a 429 after its Retry-After", answer{code: 429, header: map[string]string{"Retry-After": "9"}}, 9 * time.Second, "429"},
		{"retries a 401 slowly: the key is wrong", answer{code: 401, body: `{"errorCode":"BXNIM0415E"}`}, time.Minute, "api_key_file"},
		{"retries a 200 without a token slowly", answer{code: 200, body: `{"errorMessage":"?"}`}, time.Minute, "access_token"},
		{"does not follow a redirect", answer{code: 302, header: map[string]string{"Location": "/x"}}, time.Minute, "iam_endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.reset()
			r.thenIAM(tc.a)
			o := newOutput(t, r, nil) // no token cached
			b, _ := outputstest.NewBatch(4, 3)
			err := send(o, b)
			if err == nil || outputs.IsPermanent(err) {
				t.Fatalf("Send = %v, want a retryable error", err)
			}
			if !strings.Contains(err.Error(), tc.inError) || !strings.Contains(err.Error(), r.host()) {
				t.Errorf("error %q does not name %q and the IAM host", err, tc.inError)
			}
			var ra *outputs.RetryAfterError
			if errors.As(err, &ra) != (tc.retryAfter != 0) || ra != nil && ra.After != tc.retryAfter {
				t.Errorf("Send = %v, want Retry-After %s", err, tc.retryAfter)
			}
			if len(r.got()) != 0 {
				t.Errorf("%d ingestion requests without a token", len(r.got()))
			}
		})
	}
	t.Run("retries when IAM does not answer", func(t *testing.T) {
		dead := newReceiver(t, testKey)
		dead.srv.Close()
		o := newOutput(t, r, func(o *Options) { o.IAMEndpoint = dead.iamEndpoint() })
		b, _ := outputstest.NewBatch(4, 3)
		err := send(o, b)
		if err == nil || outputs.IsPermanent(err) || !strings.Contains(err.Error(), dead.host()) {
			t.Fatalf("Send = %v, want a retryable error naming the IAM host", err)
		}
	})
}

func TestClassifiesAnswers(t *testing.T) {
	r := newReceiver(t, testKey)
	o := newOutput(t, r, nil)
	type want struct {
		permanent  bool
		retryAfter time.Duration // 0: no RetryAfterError
		inError    string
	}
	httpDate := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name string
		a    answer
		want want
	}{
		{"accepts a 200", answer{code: 200}, want{}},
		{"accepts a 204", answer{code: 204}, want{}},
		{"retries a 429 after its Retry-After", answer{code: 429, body: "slow down", header: map[string]string{"Retry-After": "7"}}, want{retryAfter: 7 * time.Second, inError: "slow down"}},
		{"retries a 503 after its Retry-After date", answer{code: 503, header: map[string]string{"Retry-After": httpDate}}, want{retryAfter: 90 * time.Second}},
		{"caps a huge Retry-After", answer{code: 429, header: map[string]string{"Retry-After": "86400"}}, want{retryAfter: maxRetryAfter}},
		{"retries a 429 without Retry-After", answer{code: 429}, want{}},
		{"retries a 500", answer{code: 500, body: "boom"}, want{inError: "boom"}},
		{"retries a 502", answer{code: 502}, want{}},
		{"retries a 408", answer{code: 408}, want{}},
		{"does not retry a 501", answer{code: 501}, want{permanent: true}},
		{"does not retry a 400 and quotes its body", answer{code: 400, body: `{"error":"entry 3 is not valid"}`}, want{permanent: true, inError: `entry 3 is not valid`}},
		{"quotes at most 1 KiB of the answer", answer{code: 400, body: strings.Repeat("z", 5000)}, want{permanent: true, inError: strings.Repeat("z", 1024) + `"`}},
		{"does not retry a 413", answer{code: 413}, want{permanent: true}},
		{"retries a 403 slowly: the access policy, not the events", answer{code: 403, body: "forbidden here"}, want{retryAfter: time.Minute, inError: "Sender"}},
		{"does not follow a redirect, retries slowly", answer{code: 302, header: map[string]string{"Location": "/elsewhere"}}, want{retryAfter: time.Minute, inError: "/elsewhere"}},
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
				if !strings.Contains(err.Error(), r.host()) {
					t.Errorf("error %q does not name the endpoint", err)
				}
				if strings.Contains(err.Error(), testKey) || strings.Contains(err.Error(), "tok-") {
					t.Errorf("error %q shows a secret", err)
				}
				if strings.Contains(err.Error(), strings.Repeat("z", 1025)) {
					t.Errorf("error quotes more than 1 KiB of the answer")
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
			if tc.a.code >= 200 && tc.a.code <= 299 {
				if err != nil {
					t.Errorf("Send = %v, want nil", err)
				}
			} else if err == nil {
				t.Error("Send = nil, want an error")
			}
		})
	}
}

func TestSplitsABatchUnderMaxRequestBytes(t *testing.T) {
	r := newReceiver(t, testKey)
	const max = 64 << 10
	o := newOutput(t, r, func(o *Options) { o.MaxRequestBytes = max })
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
		t.Fatalf("received %d events, want the %d sent once each, in order", len(got), len(ids))
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
		first := len(r.got()[0].Entries)
		second := len(r.got()[1].Entries)
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
	t.Run("keeps everything after a 403 for a later retry, without sending more", func(t *testing.T) {
		r.reset()
		r.then(answer{code: 200}, answer{code: 403, body: "no"})
		err := send(o, b)
		var pe *outputs.PartialError
		if !errors.As(err, &pe) || len(pe.Lines) != len(ids)-len(r.received()) || outputs.IsPermanent(err) {
			t.Fatalf("Send = %v, want PartialError for every line not accepted", err)
		}
		if len(r.got()) != 2 {
			t.Errorf("%d requests, want none after the 403", len(r.got()))
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

func TestCutsOversizeEvents(t *testing.T) {
	r := newReceiver(t, testKey)
	const max = 16 << 10
	o := newOutput(t, r, func(o *Options) { o.MaxRequestBytes = max })
	names := []string{"small", "big-response", "big-both", "hopeless", "big-request", "escaped"}
	b := batchOf(
		bigEvent("small", 100, 100, `{"authorization.k8s.io/decision":"allow"}`),
		bigEvent("big-response", 500, 20000, `{"authorization.k8s.io/decision":"allow"}`),
		bigEvent("big-both", 17000, 20000, ``),
		bigEvent("hopeless", 10, 10, `{"note":"`+strings.Repeat("y", 20000)+`"}`),
		bigEvent("big-request", 30000, 0, `{}`),
		// Under the limit raw, over it escaped (each " becomes \").
		bigEvent("escaped", 100, 10, `{"q":"`+strings.Repeat(`\"`, 6000)+`"}`),
	)
	err := send(o, b)
	var re *outputs.RejectedError
	if !errors.As(err, &re) || !slices.Equal(re.Lines, []int{3, 5}) {
		t.Fatalf("Send = %v, want RejectedError for lines 3 and 5", err)
	}
	if !strings.Contains(err.Error(), "max_request_bytes") {
		t.Errorf("error %q does not name max_request_bytes", err)
	}
	for i, q := range r.got() {
		if q.BodyBytes > max {
			t.Errorf("request %d has %d bytes, over max_request_bytes", i, q.BodyBytes)
		}
	}
	got := r.accepted()
	if len(got) != 4 {
		t.Fatalf("accepted %d entries, want 4", len(got))
	}
	wantCut := map[string]string{"small": "", "big-response": "responseObject", "big-both": "requestObject,responseObject", "big-request": "requestObject"}
	for i, e := range got {
		var ev map[string]any
		if err := json.Unmarshal([]byte(e.Text), &ev); err != nil {
			t.Fatalf("entry %d is not valid JSON after cutting: %v", i, err)
		}
		id := ev["auditID"].(string)
		cut, ok := wantCut[id]
		if !ok {
			t.Fatalf("%s was sent", id)
		}
		if cut == "" {
			if e.Text != string(b.Line(0)) {
				t.Errorf("%s was changed although under the limit", id)
			}
			continue
		}
		ann, _ := ev["annotations"].(map[string]any)
		if ann[TruncatedAnnotation] != cut {
			t.Errorf("%s: annotation %v, want %q", id, ann[TruncatedAnnotation], cut)
		}
		for _, k := range strings.Split(cut, ",") {
			if _, ok := ev[k]; ok {
				t.Errorf("%s: %s still there", id, k)
			}
		}
		var orig map[string]any
		json.Unmarshal(b.Line(slices.Index(names, id)), &orig)
		if ev["verb"] != orig["verb"] || ev["stageTimestamp"] != orig["stageTimestamp"] || ev["user"] == nil {
			t.Errorf("%s: other fields changed", id)
		}
	}
	if n := o.Truncated(); n != 3 {
		t.Errorf("Truncated() = %d, want 3", n)
	}
}

func TestCheck(t *testing.T) {
	r := newReceiver(t, testKey)
	o := newOutput(t, r, nil)
	if err := o.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if q := r.got(); len(q) != 1 || len(q[0].Entries) != 0 || q[0].Token == "" || len(r.received()) != 0 {
		t.Fatalf("Check sent %+v, want one empty array with a token", q)
	}
	r.then(answer{code: 403, body: "nope"})
	if err := o.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "Sender") {
		t.Errorf("Check answered 403 = %v, want an error about the access policy", err)
	}
}

func TestHonoursContextAndTimeout(t *testing.T) {
	r := newReceiver(t, testKey)
	o := newOutput(t, r, func(o *Options) { o.Timeout = 300 * time.Millisecond })
	b, _ := outputstest.NewBatch(1, 2)
	r.then(answer{code: 200, delay: 5 * time.Second})
	if err := send(o, b); err == nil || outputs.IsPermanent(err) {
		t.Fatalf("Send to a server slower than timeout = %v, want a retryable error", err)
	}

	o = newOutput(t, r, nil)
	r.reset()
	r.then(answer{code: 200, delay: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := o.Send(ctx, b); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send with a cancelled context = %v, want context.DeadlineExceeded", err)
	}
}

func TestOptions(t *testing.T) {
	r := newReceiver(t, testKey)
	keyPath := keyFile(t, testKey)
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte(" \n"), 0o600)

	t.Run("defaults", func(t *testing.T) {
		o, err := New(Options{Endpoint: "https://abc.ingress.eu-de.logs.cloud.ibm.com/", APIKeyFile: keyPath}, nil)
		if err != nil {
			t.Fatal(err)
		}
		host, _ := os.Hostname()
		if o.url != "https://abc.ingress.eu-de.logs.cloud.ibm.com/logs/v1/singles" || o.tokens.url != DefaultIAMEndpoint ||
			o.maxBody != 2000000 || o.timeout != 30*time.Second {
			t.Errorf("url %s, iam %s, max %d, timeout %s", o.url, o.tokens.url, o.maxBody, o.timeout)
		}
		want := `{"applicationName":"kubernetes","subsystemName":"kube-audit","computerName":` + mustJSON(host) + `,"severity":`
		if string(o.enc.head) != want {
			t.Errorf("entry head %s, want %s", o.enc.head, want)
		}
		if o.tokens.host != "iam.cloud.ibm.com" {
			t.Errorf("IAM host %s", o.tokens.host)
		}
	})

	decode := func(src string) (*Output, error) {
		var c outputs.Config
		if err := yaml.Unmarshal([]byte(src), &c); err != nil {
			return nil, err
		}
		return FromConfig(c, nil)
	}
	o, err := decode(`
name: icl
type: ibmcloudlogs
endpoint: https://abc.ingress.eu-de.logs.cloud.ibm.com
iam_endpoint: https://iam.cloud.ibm.com/identity/token
api_key_file: ` + keyPath + `
application_name: k8s
subsystem_name: audit
computer_name: cp-1
max_request_bytes: 1MiB
timeout: 10s
tls:
  ca_file: ""
`)
	if err != nil {
		t.Fatalf("FromConfig: %v", err)
	}
	if o.maxBody != 1<<20 || o.timeout != 10*time.Second || o.host != "abc.ingress.eu-de.logs.cloud.ibm.com" ||
		string(o.enc.head) != `{"applicationName":"k8s","subsystemName":"audit","computerName":"cp-1","severity":` {
		t.Errorf("decoded max %d, timeout %s, host %s, head %s", o.maxBody, o.timeout, o.host, o.enc.head)
	}

	base := "type: ibmcloudlogs\nendpoint: https://x\napi_key_file: " + keyPath + "\n"
	for _, tc := range []struct{ src, want string }{
		{"type: ibmcloudlogs\napi_key_file: " + keyPath + "\n", "endpoint: required"},
		{"type: ibmcloudlogs\nendpoint: https://x\n", "api_key_file: required"},
		{"type: ibmcloudlogs\nendpoint: https://x\napi_key_file: /nonexistent/key\n", "api_key_file: cannot read /nonexistent/key"},
		{"type: ibmcloudlogs\nendpoint: https://x\napi_key_file: " + empty + "\n", "api_key_file: " + empty + " is empty"},
		{"type: ibmcloudlogs\nendpoint: https://user:pw@x\napi_key_file: " + keyPath + "\n", "endpoint: must not hold credentials"},
		{"type: ibmcloudlogs\nendpoint: ftp://x/\napi_key_file: " + keyPath + "\n", "endpoint:"},
		{"type: ibmcloudlogs\nendpoint: https://x/?a=b\napi_key_file: " + keyPath + "\n", "endpoint:"},
		{base + "iam_endpoint: iam.cloud.ibm.com\n", "iam_endpoint:"},
		{base + "max_request_bytes: 3MB\n", "max_request_bytes:"},
		{base + "max_request_bytes: 1KiB\n", "max_request_bytes:"},
		{base + "max_request_bytes: lots\n", "invalid size"},
		{base + "timeout: -1s\n", "timeout:"},
		{base + "api_key: abc\n", `unknown key "api_key"`},
		{base + "tls:\n  ca: x\n", `unknown key "tls.ca"`},
		{base + "tls:\n  ca_file: /nonexistent/ca.pem\n", "tls.ca_file"},
		{base + "max_request_bytes: 16KiB\ncomputer_name: " + strings.Repeat("h", 14000) + "\n", "computer_name: "},
	} {
		_, err := decode(tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config\n%s\ngave %v, want an error with %q", tc.src, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), testKey) {
			t.Errorf("error %q shows the key", err)
		}
	}

	t.Run("warns loudly about clear text and unverified TLS", func(t *testing.T) {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, nil))
		opts := options(t, r) // http:// both
		if _, err := New(opts, log); err != nil {
			t.Fatal(err)
		}
		opts.Endpoint, opts.IAMEndpoint = "https://x", "https://iam.x/identity/token"
		opts.TLS.InsecureSkipVerify = true
		if _, err := New(opts, log); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		for _, want := range []string{"endpoint is http://", "iam_endpoint is http://", "insecure_skip_verify"} {
			if !strings.Contains(out, "level=WARN") || !strings.Contains(out, want) {
				t.Errorf("log %q has no warning about %s", out, want)
			}
		}
		if strings.Contains(out, testKey) {
			t.Errorf("log shows the key")
		}
	})
	t.Run("makes no request", func(t *testing.T) {
		if calls, _ := r.counts(); calls != 0 || len(r.got()) != 0 {
			t.Errorf("New made %d token requests and %d ingestion requests", calls, len(r.got()))
		}
	})
}

func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestConformance(t *testing.T) {
	r := newReceiver(t, testKey)
	outputstest.Run(t, outputstest.Harness{
		New: func(t *testing.T) outputs.Output {
			o, err := New(options(t, r), nil)
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
