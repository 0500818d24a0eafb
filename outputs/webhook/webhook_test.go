package webhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/outputstest"
)

// lists is a webhook consumer decoding with encoding/json: it keeps every
// EventList body and the Authorization header of each request.
type lists struct {
	mu     sync.Mutex
	bodies [][]byte
	auths  []string
	ids    []string
	codes  []int // scripted answers, consumed in order
	want   string
}

func (l *lists) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	data, _ := io.ReadAll(r.Body)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.auths = append(l.auths, r.Header.Get("Authorization"))
	if l.want != "" && r.Header.Get("Authorization") != l.want {
		w.WriteHeader(401)
		return
	}
	if len(l.codes) > 0 {
		c := l.codes[0]
		l.codes = l.codes[1:]
		if c != 0 {
			w.WriteHeader(c)
			return
		}
	}
	var el struct {
		Kind, APIVersion string
		Items            []struct{ AuditID string }
	}
	if r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(data, &el) != nil || el.Kind != "EventList" || el.APIVersion != "audit.k8s.io/v1" {
		w.WriteHeader(400)
		return
	}
	l.bodies = append(l.bodies, data)
	for _, it := range el.Items {
		l.ids = append(l.ids, it.AuditID)
	}
}

func (l *lists) received() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ids...)
}

func newOut(t *testing.T, o Options) *Output {
	t.Helper()
	out, err := New(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close(context.Background()) })
	return out
}

func send(o *Output, b *outputs.Batch) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return o.Send(ctx, b)
}

func batchOf(lines ...[]byte) *outputs.Batch {
	b := &outputs.Batch{Input: "t"}
	for _, l := range lines {
		b.Append(l)
	}
	b.Parse(nil)
	return b
}

func TestItemsAreTheLinesAsRead(t *testing.T) {
	l := &lists{}
	srv := httptest.NewServer(l)
	defer srv.Close()
	o := newOut(t, Options{URL: srv.URL + "/k8s-audit"})
	b, ids := outputstest.NewBatch(1, 50)
	if err := send(o, b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l.received(), ids) {
		t.Fatal("received auditIDs differ from the batch's")
	}
	var el struct{ Items []json.RawMessage }
	json.Unmarshal(l.bodies[0], &el)
	for i, it := range el.Items {
		if string(it) != string(b.Line(i)) {
			t.Fatalf("item %d is not the line as read:\n%s\n%s", i, it, b.Line(i))
		}
	}
}

func TestBatchesAreSplitAtMaxBodyBytes(t *testing.T) {
	l := &lists{}
	srv := httptest.NewServer(l)
	defer srv.Close()
	o := newOut(t, Options{URL: srv.URL, MaxBodyBytes: 64 << 10, MaxEventBytes: 16 << 10})
	b, ids := outputstest.NewBatch(2, 500)
	if err := send(o, b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l.received(), ids) {
		t.Fatal("the split batch did not arrive whole and in order")
	}
	if len(l.bodies) < 2 {
		t.Fatalf("%d requests, want the batch split", len(l.bodies))
	}
	for _, body := range l.bodies {
		if len(body) > 64<<10 {
			t.Fatalf("a request of %d bytes, over max_body_bytes", len(body))
		}
	}
}

func TestLargeEventsAreCutAndAnnotated(t *testing.T) {
	l := &lists{}
	srv := httptest.NewServer(l)
	defer srv.Close()
	o := newOut(t, Options{URL: srv.URL, MaxEventBytes: 8 << 10})
	big := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"big","stage":"ResponseComplete","verb":"create","requestObject":{"data":"` + strings.Repeat("x", 20<<10) + `"},"responseObject":{"data":"` + strings.Repeat("y", 20<<10) + `"},"annotations":{"a":"b"}}`
	huge := `{"kind":"Event","auditID":"huge","stage":"ResponseComplete","user":{"username":"` + strings.Repeat("u", 20<<10) + `"}}`
	err := send(o, batchOf([]byte(big), []byte(huge), []byte("not an event")))
	var re *outputs.RejectedError
	if !errors.As(err, &re) || !reflect.DeepEqual(re.Lines, []int{1, 2}) {
		t.Fatalf("Send = %v, want lines 1 (too large even cut) and 2 (not an event) rejected", err)
	}
	var el struct {
		Items []map[string]any
	}
	json.Unmarshal(l.bodies[0], &el)
	if len(el.Items) != 1 {
		t.Fatalf("%d items, want 1", len(el.Items))
	}
	it := el.Items[0]
	if _, ok := it["requestObject"]; ok {
		t.Error("requestObject kept")
	}
	if _, ok := it["responseObject"]; ok {
		t.Error("responseObject kept")
	}
	if ann := it["annotations"].(map[string]any); ann[outputs.TruncatedAnnotation] != "requestObject,responseObject" || ann["a"] != "b" {
		t.Errorf("annotations %v", ann)
	}
	if o.Truncated() != 1 {
		t.Errorf("Truncated() = %d", o.Truncated())
	}
}

func TestAnswers(t *testing.T) {
	for _, tc := range []struct {
		code      int
		permanent bool
		after     bool
	}{
		{400, true, false}, {413, false, false}, {422, true, false}, {501, true, false},
		{401, false, true}, {403, false, true}, {301, false, true},
		{408, false, false}, {429, false, false}, {500, false, false}, {503, false, false},
	} {
		l := &lists{codes: []int{tc.code}}
		srv := httptest.NewServer(l)
		o := newOut(t, Options{URL: srv.URL})
		b, _ := outputstest.NewBatch(3, 3)
		err := send(o, b)
		var ra *outputs.RetryAfterError
		if err == nil || outputs.IsPermanent(err) != tc.permanent || errors.As(err, &ra) != tc.after {
			t.Errorf("answer %d: Send = %v, want permanent=%v retry-after=%v", tc.code, err, tc.permanent, tc.after)
		}
		srv.Close()
	}
}

func TestA413HalvesTheRequestSize(t *testing.T) {
	l := &lists{codes: []int{413}}
	srv := httptest.NewServer(l)
	defer srv.Close()
	o := newOut(t, Options{URL: srv.URL, MaxBodyBytes: 256 << 10, MaxEventBytes: 16 << 10})
	b, ids := outputstest.NewBatch(6, 300)
	if err := send(o, b); err == nil || outputs.IsPermanent(err) {
		t.Fatalf("Send answered 413 = %v, want a retryable error", err)
	}
	if err := send(o, b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l.received(), ids) {
		t.Fatal("the batch did not arrive whole after the 413")
	}
	for _, body := range l.bodies {
		if len(body) > 128<<10 {
			t.Fatalf("a request of %d bytes after a 413 at 256 KiB", len(body))
		}
	}
}

func TestBearerTokenFileIsReadAgainAfterA401(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("one\n"), 0o600)
	l := &lists{want: "Bearer one"}
	srv := httptest.NewServer(l)
	defer srv.Close()
	o := newOut(t, Options{URL: srv.URL, BearerTokenFile: tok})
	b, _ := outputstest.NewBatch(4, 3)
	if err := send(o, b); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	l.want = "Bearer two"
	l.mu.Unlock()
	os.WriteFile(tok, []byte("two"), 0o600)
	if err := send(o, b); err == nil || outputs.IsPermanent(err) {
		t.Fatalf("Send answered 401 = %v, want a retryable error", err)
	}
	if err := send(o, b); err != nil {
		t.Fatalf("Send with the rotated token: %v", err)
	}
}

// selfSigned returns a CA-less self-signed server certificate for
// 127.0.0.1 and a client certificate, PEM-encoded.
func selfSigned(t *testing.T, cn string, server bool) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		IsCA:         true, BasicConstraintsValid: true,
	}
	if server {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// TestKubeconfigGivesServerCAAndClientCertificate uses the file format
// kube-apiserver's --audit-webhook-config-file takes, with the CA and the
// client certificate inline (-data) and as files beside it.
func TestKubeconfigGivesServerCAAndClientCertificate(t *testing.T) {
	srvCert, srvKey := selfSigned(t, "receiver", true)
	cliCert, cliKey := selfSigned(t, "kube-apiserver", false)
	pair, _ := tls.X509KeyPair(srvCert, srvKey)
	clients := x509.NewCertPool()
	clients.AppendCertsFromPEM(cliCert)
	l := &lists{want: "Bearer kc-token"}
	srv := httptest.NewUnstartedServer(l)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: clients, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	defer srv.Close()

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.pem"), srvCert, 0o600)
	os.WriteFile(filepath.Join(dir, "client.pem"), cliCert, 0o600)
	os.WriteFile(filepath.Join(dir, "client-key.pem"), cliKey, 0o600)
	enc := base64.StdEncoding.EncodeToString
	for name, body := range map[string]string{
		"inline": fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: falco
  cluster:
    server: %s/k8s-audit
    certificate-authority-data: %s
users:
- name: api-server
  user:
    token: kc-token
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: default
  context: {cluster: falco, user: api-server}
current-context: default
`, srv.URL, enc(srvCert), enc(cliCert), enc(cliKey)),
		"files": fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: falco
  cluster: {server: "%s/k8s-audit", certificate-authority: ca.pem}
users:
- name: api-server
  user: {token: kc-token, client-certificate: client.pem, client-key: client-key.pem}
`, srv.URL),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".kubeconfig")
			os.WriteFile(path, []byte(body), 0o600)
			o := newOut(t, Options{KubeconfigFile: path})
			b, ids := outputstest.NewBatch(5, 10)
			before := len(l.received())
			if err := send(o, b); err != nil {
				t.Fatal(err)
			}
			if got := l.received()[before:]; !reflect.DeepEqual(got, ids) {
				t.Fatalf("received %v", got)
			}
			if err := o.Check(context.Background()); err != nil {
				t.Fatalf("Check: %v", err)
			}
		})
	}
}

func TestKubeconfigErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ body, want string }{
		{"clusters: [{name: a, cluster: {server: https://x}}, {name: b, cluster: {server: https://y}}]\n", "not exactly one context"},
		{"clusters: [{name: a, cluster: {}}]\n", "has no server"},
		{"clusters: [{name: a, cluster: {server: https://x}}]\ncontexts: [{name: c, context: {cluster: a, user: u}}]\ncurrent-context: d\n", `current-context "d"`},
		{"clusters: [{name: a, cluster: {server: https://x}}]\nusers: [{name: u, user: {exec: {command: x}}}]\n", "exec and auth-provider"},
		{"clusters: [{name: a, cluster: {server: https://x, certificate-authority: missing.pem}}]\n", "certificate-authority"},
		{"clusters: [{name: a, cluster: {server: https://x}}]\nusers: [{name: u, user: {client-certificate-data: eA==}}]\n", "both the certificate and the key"},
		{"clusters: [[\n", "kubeconfig_file"},
	} {
		path := filepath.Join(dir, "kc")
		os.WriteFile(path, []byte(tc.body), 0o600)
		_, err := New(Options{KubeconfigFile: path}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "kubeconfig_file") {
			t.Errorf("%q: New = %v, want an error naming kubeconfig_file and containing %q", tc.body, err, tc.want)
		}
	}
}

func TestOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{}, "url: required"},
		{Options{URL: "falco:9765"}, "url"},
		{Options{URL: "http://falco", BearerTokenFile: "/nonexistent"}, "bearer_token_file"},
		{Options{URL: "http://falco", MaxEventBytes: 100}, "max_event_bytes"},
		{Options{URL: "http://falco", MaxBodyBytes: 100 << 10}, "max_body_bytes"},
	} {
		if _, err := New(tc.o, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestKubeconfigTokenFileAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "token"), []byte("from-file\n"), 0o600)
	for name, tc := range map[string]struct{ user, want string }{
		"tokenFile, relative to the kubeconfig": {"{tokenFile: token}", "Bearer from-file"},
		"basic":                                 {"{username: apiserver, password: s3cret}", "Basic YXBpc2VydmVyOnMzY3JldA=="},
	} {
		t.Run(name, func(t *testing.T) {
			l := &lists{want: tc.want}
			srv := httptest.NewServer(l)
			defer srv.Close()
			kc := filepath.Join(dir, "kc.yaml")
			os.WriteFile(kc, fmt.Appendf(nil, "clusters: [{name: c, cluster: {server: %q}}]\nusers: [{name: u, user: %s}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n", srv.URL, tc.user), 0o600)
			o := newOut(t, Options{KubeconfigFile: kc})
			b, ids := outputstest.NewBatch(8, 5)
			if err := send(o, b); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(l.received(), ids) {
				t.Fatalf("received %v", l.received())
			}
		})
	}
}
