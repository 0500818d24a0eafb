package webhook

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

const testToken = "s3cret-token"

type testServer struct {
	srv        *httptest.Server
	h          *Handler
	spool      *Spool
	clientCert tls.Certificate
}

// newTestServer serves a handler over TLS on 127.0.0.1; with clientCert
// it asks for a client certificate (verified if given, as the agent does).
func newTestServer(t *testing.T, cfg HandlerConfig, maxBytes int64) *testServer {
	t.Helper()
	s := openSpool(t, t.TempDir(), maxBytes)
	h := NewHandler(cfg, s)
	srv := httptest.NewUnstartedServer(h)
	if cfg.ClientCert {
		srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven}
	}
	srv.StartTLS()
	ts := &testServer{srv: srv, h: h, spool: s}
	if cfg.ClientCert {
		ca, caKey := newCA(t)
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		srv.TLS.ClientCAs = pool
		ts.clientCert = newClientCert(t, ca, caKey)
	}
	t.Cleanup(srv.Close)
	return ts
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return ca, key
}

func newClientCert(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ts *testServer) post(t *testing.T, client *http.Client, method, path, contentType, token string, body []byte) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, ts.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if client == nil {
		client = ts.srv.Client()
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg), resp.Header
}

// spooled returns the auditIDs in the spool.
func (ts *testServer) spooled(t *testing.T) []string {
	t.Helper()
	var ids []string
	for _, l := range ts.lines(t) {
		ids = append(ids, auditIDOf(t, l))
	}
	return ids
}

func (ts *testServer) lines(t *testing.T) []string {
	t.Helper()
	r, err := ts.spool.Open(ReaderConfig{MaxEvents: 100000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if ts.spool.Synced() == ts.spool.first.Load() {
		return nil
	}
	c, err := r.Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	var out []string
	for i := range c.Len() {
		out = append(out, string(c.Line(i)))
	}
	return out
}

func eventList(version string, items ...string) []byte {
	return []byte(`{"kind":"EventList","apiVersion":"` + version + `","metadata":{},"items":[` + strings.Join(items, ",") + `]}`)
}

func item(id string) string {
	return `{"level":"Metadata","auditID":"` + id + `","stage":"ResponseComplete","requestURI":"/api/v1/nodes","verb":"list","user":{"username":"admin"},"stageTimestamp":"2026-12-03T10:00:00.000000Z"}`
}

func TestTheHandlerAnswersEachRefusalWithItsCodeAndSpoolsNothing(t *testing.T) {
	ts := newTestServer(t, HandlerConfig{Path: "/audit/webhook/event", Token: []byte(testToken), MaxBodyBytes: 4096}, 1<<20)
	good := eventList("audit.k8s.io/v1", item("a"))
	big := eventList("audit.k8s.io/v1", strings.Repeat(item("b")+",", 30)+item("c"))
	const path, json = "/audit/webhook/event", "application/json"
	cases := []struct {
		name                string
		method, path, ctype string
		token               string
		body                []byte
		code                int
		says                string
	}{
		{"another path is 404", "POST", "/", json, testToken, good, 404, "no webhook at"},
		{"GET is 405", "GET", path, json, testToken, nil, 405, "method GET not allowed"},
		{"no token is 401", "POST", path, json, "", good, 401, "a bearer token is required"},
		{"a wrong token is 401", "POST", path, json, "guess", good, 401, "the bearer token is wrong"},
		{"a method is checked before the token", "PUT", path, json, "", good, 405, "method PUT"},
		{"a body over max_body_bytes is 413", "POST", path, json, testToken, big, 413, "over max_body_bytes (4096)"},
		{"a form is 415", "POST", path, "application/x-www-form-urlencoded", testToken, good, 415, "is not application/json"},
		{"not JSON is 400", "POST", path, json, testToken, []byte(`{"kind":"EventList",`), 400, "not a JSON object"},
		{"a JSON array is 400", "POST", path, json, testToken, []byte(`[` + item("a") + `]`), 400, "not a JSON object"},
		{"JSON that is not an EventList is 400", "POST", path, json, testToken, []byte(`{"hello":"world"}`), 400, `has no "kind"`},
		{"another kind is 400", "POST", path, json, testToken, []byte(`{"kind":"Pod","apiVersion":"v1"}`), 400, `kind is "Pod"`},
		{"another apiVersion is 400", "POST", path, json, testToken, eventList("audit.k8s.io/v2", item("a")), 400, `apiVersion is "audit.k8s.io/v2"`},
		{"one bad item is 400 for the whole request", "POST", path, json, testToken,
			eventList("audit.k8s.io/v1", item("ok-1"), `{"level":"Metadata","stage":"ResponseComplete"}`, item("ok-3")), 400, "items[1] (at byte"},
		{"an item that is not an object is 400", "POST", path, json, testToken, eventList("audit.k8s.io/v1", item("ok-1"), `"x"`), 400, "not an object"},
		{"Items spelt otherwise is 400, not 200 with nothing kept", "POST", path, json, testToken,
			[]byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","Items":[` + item("a") + `]}`), 400, `has "Items", not "items"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, msg, hdr := ts.post(t, nil, c.method, c.path, c.ctype, c.token, c.body)
			if code != c.code || !strings.Contains(msg, c.says) {
				t.Fatalf("got %d %q, want %d saying %q", code, msg, c.code, c.says)
			}
			if code == 405 && hdr.Get("Allow") != "POST" {
				t.Fatalf("405 without Allow: POST")
			}
			if code == 400 && !strings.Contains(msg, "nothing of this request was kept") {
				t.Fatalf("a 400 must say nothing was kept: %q", msg)
			}
			if ids := ts.spooled(t); len(ids) != 0 {
				t.Fatalf("a refused request spooled %v", ids)
			}
		})
	}
	for _, code := range []int{404, 405, 401, 413, 415, 400} {
		if ts.h.Stats.Requests(code) == 0 {
			t.Errorf("no request counted for %d", code)
		}
	}
}

func TestTheHandlerSpoolsEventListsOfBothVersionsAndSingleEventsAsLogBackendLines(t *testing.T) {
	ts := newTestServer(t, HandlerConfig{}, 1<<20)
	real, err := os.ReadFile("../../testdata/real/joonghyunlee__k8s-audit-webhook__events.json")
	if err != nil {
		t.Fatalf("testdata/real (copied from the shared test data): %v", err)
	}
	bodies := []struct {
		ctype string
		body  []byte
	}{
		{"application/json", eventList("audit.k8s.io/v1", item("v1-1"), item("v1-2"))},
		{"application/json; charset=utf-8", eventList("audit.k8s.io/v1beta1", item("beta-1"))},
		{"application/json", []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"single","stage":"ResponseComplete"}` + "\n")},
		{"application/json", real},                         // pretty-printed, as a real webhook receiver got it
		{"application/json", eventList("audit.k8s.io/v1")}, // empty: nothing to keep
	}
	for _, b := range bodies {
		if code, msg, _ := ts.post(t, nil, "POST", "/", b.ctype, "", b.body); code != 200 {
			t.Fatalf("%d %s for %.60s", code, msg, b.body)
		}
	}
	lines := ts.lines(t)
	var ids, versions []string
	for _, l := range lines {
		var ev struct {
			Kind, APIVersion, AuditID string
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("a spooled line is not one JSON object: %v: %.100s", err, l)
		}
		if ev.Kind != "Event" {
			t.Fatalf("a spooled line has kind %q: %.100s", ev.Kind, l)
		}
		ids = append(ids, ev.AuditID)
		versions = append(versions, ev.APIVersion)
	}
	want := []string{"v1-1", "v1-2", "beta-1", "single", "b7699b7e-e876-4c97-9b18-f7e7adc18841"}
	if len(ids) != 6 || strings.Join(ids[:5], " ") != strings.Join(want, " ") {
		t.Fatalf("spooled %v, want %v and the second real item", ids, want)
	}
	if versions[2] != "audit.k8s.io/v1beta1" || versions[0] != "audit.k8s.io/v1" {
		t.Fatalf("apiVersions %v: an item takes its list's", versions)
	}
	if got := ts.h.Stats.Events.Load(); got != 6 {
		t.Fatalf("events counted: %d", got)
	}
}

func TestAFullSpoolIs429WithRetryAfterAndClosingIs503(t *testing.T) {
	ts := newTestServer(t, HandlerConfig{MaxBodyBytes: 64 << 10}, 128<<10)
	var items []string
	for i := 0; i < 40; i++ {
		items = append(items, item(strings.Repeat("z", 900)+string(rune('a'+i%26))))
	}
	body := eventList("audit.k8s.io/v1", items...)
	var code int
	var hdr http.Header
	n := 0
	for ; n < 10; n++ {
		if code, _, hdr = ts.post(t, nil, "POST", "/", "application/json", "", body); code != 200 {
			break
		}
	}
	if code != 429 || hdr.Get("Retry-After") == "" {
		t.Fatalf("after %d requests: %d (Retry-After %q), want 429 with Retry-After", n, code, hdr.Get("Retry-After"))
	}
	if got := len(ts.spooled(t)); got != n*40 {
		t.Fatalf("spooled %d events of %d acknowledged", got, n*40)
	}
	ts.h.Close()
	if err := ts.spool.Trim(ts.spool.Synced()); err != nil {
		t.Fatal(err)
	}
	if code, msg, hdr := ts.post(t, nil, "POST", "/", "application/json", "", body); code != 503 || hdr.Get("Retry-After") == "" {
		t.Fatalf("closing: %d %s", code, msg)
	}
}

func TestAClientCertificateIsRequiredWhenAClientCAIsSetAndATokenToo(t *testing.T) {
	ts := newTestServer(t, HandlerConfig{ClientCert: true, Token: []byte(testToken)}, 1<<20)
	body := eventList("audit.k8s.io/v1", item("mtls"))
	// Without a client certificate.
	code, msg, _ := ts.post(t, nil, "POST", "/", "application/json", testToken, body)
	if code != 401 || !strings.Contains(msg, "client certificate") {
		t.Fatalf("without a client certificate: %d %s", code, msg)
	}
	// With one signed by the client CA.
	cert := ts.clientCert
	client := ts.srv.Client()
	tr := client.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	withCert := &http.Client{Transport: tr, Timeout: time.Minute}
	if code, msg, _ := ts.post(t, withCert, "POST", "/", "application/json", "", body); code != 401 || !strings.Contains(msg, "bearer token is required") {
		t.Fatalf("a certificate but no token: %d %s", code, msg)
	}
	if code, msg, _ := ts.post(t, withCert, "POST", "/", "application/json", testToken, body); code != 200 {
		t.Fatalf("certificate and token: %d %s", code, msg)
	}
	if ids := ts.spooled(t); len(ids) != 1 || ids[0] != "mtls" {
		t.Fatalf("spooled %v", ids)
	}
}
