package apiservertest

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit"
	utilwebhook "k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/apiserver/plugin/pkg/audit/buffered"
	"k8s.io/apiserver/plugin/pkg/audit/webhook"
)

// stall is how long a wait may see no progress before the test fails.
const stall = 90 * time.Second

// repoRoot is the audittail module, four levels up.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "audittail")); err != nil {
		t.Fatalf("cannot find the audittail module at %s: %v", root, err)
	}
	return root
}

func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "audittail")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/audittail")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// pki is a CA, a server certificate for 127.0.0.1 and a client
// certificate, as PEM files.
type pki struct {
	caFile, certFile, keyFile, clientCert, clientKey string
	caPEM, clientCertPEM, clientKeyPEM               []byte
}

func newPKI(t *testing.T, dir string) pki {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "audittail test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	p := pki{
		caFile: filepath.Join(dir, "ca.crt"), certFile: filepath.Join(dir, "server.crt"), keyFile: filepath.Join(dir, "server.key"),
		clientCert: filepath.Join(dir, "client.crt"), clientKey: filepath.Join(dir, "client.key"),
	}
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	srvCert, srvKey := leaf(2, "audittail", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.clientCertPEM, p.clientKeyPEM = leaf(3, "kube-apiserver", x509.ExtKeyUsageClientAuth, nil)
	for path, data := range map[string][]byte{p.caFile: p.caPEM, p.certFile: srvCert, p.keyFile: srvKey, p.clientCert: p.clientCertPEM, p.clientKey: p.clientKeyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// acked records the auditIDs of the batches kube-apiserver's webhook
// backend delivered (a 2xx), between the buffered backend and it.
type acked struct {
	audit.Backend
	mu      sync.Mutex
	ids     map[string]bool
	batches int
	failed  int
}

func (a *acked) ProcessEvents(evs ...*auditinternal.Event) bool {
	ok := a.Backend.ProcessEvents(evs...)
	a.mu.Lock()
	defer a.mu.Unlock()
	if !ok {
		a.failed += len(evs)
		return false
	}
	a.batches++
	for _, e := range evs {
		a.ids[string(e.AuditID)] = true
	}
	return true
}

func (a *acked) snapshot() map[string]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]bool, len(a.ids))
	for id := range a.ids {
		out[id] = true
	}
	return out
}

type agentProc struct {
	t    *testing.T
	bin  string
	cfg  string
	dir  string
	cmd  *exec.Cmd
	logs []string
}

func (p *agentProc) start() {
	p.t.Helper()
	log := filepath.Join(p.dir, fmt.Sprintf("agent-%d.log", len(p.logs)))
	f, err := os.Create(log)
	if err != nil {
		p.t.Fatal(err)
	}
	p.logs = append(p.logs, log)
	p.cmd = exec.Command(p.bin, "run", "--config", p.cfg)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	f.Close()
}

func (p *agentProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
}

func (p *agentProc) terminate() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
}

func (p *agentProc) allLogs() string {
	var b strings.Builder
	for _, l := range p.logs {
		data, _ := os.ReadFile(l)
		fmt.Fprintf(&b, "--- %s\n%s", filepath.Base(l), data)
	}
	return b.String()
}

// delivered counts each auditID in the file output.
func delivered(t *testing.T, path string) map[string]int {
	t.Helper()
	got := map[string]int{}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return got
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev struct {
			Kind    string `json:"kind"`
			AuditID string `json:"auditID"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			// The last line may be in the middle of a write.
			continue
		}
		if ev.Kind != "Event" {
			t.Fatalf("the output holds a line that is not an Event: %.200s", sc.Bytes())
		}
		got[ev.AuditID]++
	}
	return got
}

func newEvent(i int) *auditinternal.Event {
	now := metav1.NewMicroTime(time.Now())
	return &auditinternal.Event{
		Level:                    auditinternal.LevelMetadata,
		AuditID:                  types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i)),
		Stage:                    auditinternal.StageResponseComplete,
		RequestURI:               fmt.Sprintf("/api/v1/namespaces/default/pods/web-%d", i),
		Verb:                     "get",
		User:                     authnv1.UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller", Groups: []string{"system:serviceaccounts", "system:authenticated"}},
		SourceIPs:                []string{"10.0.0.12"},
		UserAgent:                "kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/abcdef0",
		ObjectRef:                &auditinternal.ObjectReference{Resource: "pods", Namespace: "default", Name: fmt.Sprintf("web-%d", i), APIVersion: "v1"},
		ResponseStatus:           &metav1.Status{Code: 200},
		RequestReceivedTimestamp: now,
		StageTimestamp:           now,
		Annotations:              map[string]string{"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""},
	}
}

func TestKubeAPIServersWebhookBackendLosesNothingAcrossAgentKills(t *testing.T) {
	dir := t.TempDir()
	bin := buildAgent(t)
	p := newPKI(t, dir)
	token := "s3cret-token-for-the-test"
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	addr := freePort(t)
	out := filepath.Join(dir, "out", "audit.jsonl")
	cfg := filepath.Join(dir, "audittail.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, `state_dir: %s
checkpoint_interval: 100ms
shutdown_timeout: 10s
metrics: {listen: "off"}
inputs:
  - type: webhook
    listen: %s
    path: /audit/webhook/event
    tls: {cert_file: %s, key_file: %s, client_ca_file: %s}
    auth: {bearer_token_file: %s}
    spool: {dir: %s, max_bytes: 64MiB}
outputs:
  - type: file
    path: %s
`, filepath.Join(dir, "state"), addr, p.certFile, p.keyFile, p.caFile, tokenFile, filepath.Join(dir, "spool"), out), 0o600)

	kubeconfig := writeKubeconfig(t, dir, "https://"+addr+"/audit/webhook/event", p, token)
	rec, backend, stop := startBackend(t, kubeconfig)

	agent := &agentProc{t: t, bin: bin, cfg: cfg, dir: dir}
	agent.start()
	const total, kills = 30000, 3
	for i := range total {
		backend.ProcessEvents(newEvent(i))
		if i%(total/(kills+1)) == total/(kills+1)-1 && i < total-1 {
			time.Sleep(300 * time.Millisecond)
			agent.kill()
			time.Sleep(200 * time.Millisecond)
			agent.start()
		}
		if i%1000 == 999 {
			time.Sleep(250 * time.Millisecond) // about 4,000 events/s, the default throttle's pace
		}
	}
	close(stop)
	backend.Shutdown() // flushes the buffer, waits for the sends
	want := rec.snapshot()
	if len(want) < total/2 {
		t.Fatalf("the backend got a 2xx for only %d of %d events (%d given up):\n%s", len(want), total, rec.failed, agent.allLogs())
	}

	var got map[string]int
	best, since := -1, time.Now()
	for {
		got = delivered(t, out)
		missing := 0
		for id := range want {
			if got[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if n := len(got); n > best {
			best, since = n, time.Now()
		} else if time.Since(since) > stall {
			t.Fatalf("%d of the %d events the backend delivered never reached the output (no progress for %s):\n%s", missing, len(want), stall, agent.allLogs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	agent.terminate()
	got = delivered(t, out)
	dups := 0
	for id, n := range got {
		if n > 1 {
			dups += n - 1
		}
		if !want[id] && !strings.HasPrefix(id, "00000000-0000-4000-8000-") {
			t.Fatalf("the output holds an event nobody sent: %s", id)
		}
	}
	// A kill can cost a re-sent batch of the output (max_events) and a
	// request the backend re-posted because its 200 was lost.
	if limit := kills * (1000 + 400); dups > limit {
		t.Fatalf("%d duplicates, more than %d (%d kills x (one output batch + one webhook batch))", dups, limit, kills)
	}
	t.Logf("%d events acknowledged to the backend in %d batches, %d given up; all delivered, %d duplicates", len(want), rec.batches, rec.failed, dups)
	if !bytes.Contains([]byte(agent.allLogs()), []byte("webhook")) {
		t.Logf("agent logs:\n%s", agent.allLogs())
	}
}

// writeKubeconfig writes the kubeconfig kube-apiserver reads with
// --audit-webhook-config-file: the agent's URL, the CA, the client
// certificate and the token.
func writeKubeconfig(t *testing.T, dir, server string, p pki, token string) string {
	t.Helper()
	path := filepath.Join(dir, "webhook.kubeconfig")
	err := os.WriteFile(path, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
  - name: audittail
    cluster:
      server: %s
      certificate-authority: %s
users:
  - name: kube-apiserver
    user:
      client-certificate: %s
      client-key: %s
      token: %s
contexts:
  - name: default
    context: {cluster: audittail, user: kube-apiserver}
current-context: default
`, server, p.caFile, p.clientCert, p.clientKey, token), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// startBackend builds kube-apiserver's webhook backend as kube-apiserver
// does for --audit-webhook-mode=batch (options.defaultWebhookBatchConfig),
// with --audit-webhook-initial-backoff=500ms so that retries outlast a
// restart of the agent in a test-sized time, and runs it until stop is
// closed. rec records what it delivered.
func startBackend(t *testing.T, kubeconfig string) (rec *acked, backend audit.Backend, stop chan struct{}) {
	t.Helper()
	retry := utilwebhook.DefaultRetryBackoffWithInitialDelay(500 * time.Millisecond)
	wb, err := webhook.NewBackend(kubeconfig, schema.GroupVersion{Group: "audit.k8s.io", Version: "v1"}, retry, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec = &acked{Backend: wb, ids: map[string]bool{}}
	backend = buffered.NewBackend(rec, buffered.BatchConfig{
		BufferSize: 10000, MaxBatchSize: 400, MaxBatchWait: 30 * time.Second,
		ThrottleEnable: true, ThrottleQPS: 10, ThrottleBurst: 15, AsyncDelegate: true,
	})
	stop = make(chan struct{})
	if err := backend.Run(stop); err != nil {
		t.Fatal(err)
	}
	return rec, backend, stop
}
