package examples_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/audittail/audittail/agent"
)

// webhookKubeconfig mirrors the fields of client-go's kubeconfig (v1 Config)
// that kube-apiserver's audit webhook reads, so that a misspelt field fails
// the strict decode.
type webhookKubeconfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Clusters   []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server               string `json:"server"`
			CertificateAuthority string `json:"certificate-authority"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			ClientCertificate string `json:"client-certificate"`
			ClientKey         string `json:"client-key"`
			Token             string `json:"token"`
		} `json:"user"`
	} `json:"users"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
	CurrentContext string `json:"current-context"`
}

// certFiles are what make-certs.sh writes.
var certFiles = []string{"ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key", "token"}

func TestWebhookExample(t *testing.T) {
	data, err := os.ReadFile("webhook/kubeconfig.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var kc webhookKubeconfig
	if err := yaml.UnmarshalStrict(data, &kc); err != nil {
		t.Fatalf("webhook/kubeconfig.yaml: %v", err)
	}
	if kc.APIVersion != "v1" || kc.Kind != "Config" || len(kc.Clusters) != 1 || len(kc.Users) != 1 || len(kc.Contexts) != 1 {
		t.Fatalf("webhook/kubeconfig.yaml: want a v1 Config with one cluster, user and context")
	}
	cluster, user := kc.Clusters[0].Cluster, kc.Users[0].User
	server, err := url.Parse(cluster.Server)
	if err != nil {
		t.Fatalf("server %q: %v", cluster.Server, err)
	}
	cfg := parseConfig(t, "webhook/config.yaml")

	t.Run("the kubeconfig's context names its cluster and user", func(t *testing.T) {
		c := kc.Contexts[0]
		if kc.CurrentContext != c.Name || c.Context.Cluster != kc.Clusters[0].Name || c.Context.User != kc.Users[0].Name {
			t.Errorf("current-context %q, context %+v: not the one cluster and user", kc.CurrentContext, c)
		}
	})

	t.Run("the kubeconfig posts over TLS where the input and the overlay listen", func(t *testing.T) {
		if server.Scheme != "https" {
			t.Errorf("server %s is not https", cluster.Server)
		}
		if ip := net.ParseIP(server.Hostname()); ip == nil {
			t.Errorf("server host %q is not an IP: kube-apiserver on the host network or behind a managed tunnel resolves no cluster DNS", server.Hostname())
		}
		overlay := overlayConfig(t)
		for _, c := range []struct {
			file string
			cfg  *agent.Config
		}{{"webhook/config.yaml", cfg}, {"../manifests/overlays/webhook/configmap.yaml", overlay}} {
			if len(c.cfg.Inputs) != 1 || c.cfg.Inputs[0].Type != agent.InputWebhook {
				t.Errorf("%s: want one webhook input", c.file)
				continue
			}
			in := c.cfg.Inputs[0]
			if _, port, _ := net.SplitHostPort(in.Listen); port != server.Port() {
				t.Errorf("%s: listens on %s, the kubeconfig posts to port %s", c.file, in.Listen, server.Port())
			}
			if in.Path != server.Path {
				t.Errorf("%s: path %s, the kubeconfig posts to %s", c.file, in.Path, server.Path)
			}
			if in.Insecure || in.TLS.ClientCAFile == "" || in.Auth.BearerTokenFile == "" {
				t.Errorf("%s: want TLS with a client CA and a token (insecure %v)", c.file, in.Insecure)
			}
		}
	})

	t.Run("the kubeconfig and the config use the files make-certs.sh writes", func(t *testing.T) {
		for key, f := range map[string]string{
			"certificate-authority": cluster.CertificateAuthority,
			"client-certificate":    user.ClientCertificate,
			"client-key":            user.ClientKey,
		} {
			if !path.IsAbs(f) || !slices.Contains(certFiles, path.Base(f)) {
				t.Errorf("kubeconfig %s = %q, want an absolute path to one of %v", key, f, certFiles)
			}
		}
		if !strings.HasPrefix(user.Token, "EXAMPLE-") {
			t.Errorf("kubeconfig token %q does not look like a placeholder", user.Token)
		}
		in := cfg.Inputs[0]
		for key, f := range map[string]string{
			"tls.cert_file": in.TLS.CertFile, "tls.key_file": in.TLS.KeyFile,
			"tls.client_ca_file": in.TLS.ClientCAFile, "auth.bearer_token_file": in.Auth.BearerTokenFile,
		} {
			if !strings.HasPrefix(f, "/etc/audittail/") || !slices.Contains(certFiles, path.Base(f)) {
				t.Errorf("config %s = %q, want a file of make-certs.sh under /etc/audittail/", key, f)
			}
		}
		if in.TLS.ClientCAFile == in.TLS.CertFile || path.Base(in.TLS.ClientCAFile) != path.Base(cluster.CertificateAuthority) {
			t.Errorf("client_ca_file %s: make-certs.sh's one CA (%s) signs both sides", in.TLS.ClientCAFile, cluster.CertificateAuthority)
		}
		if !strings.HasPrefix(in.Spool.Dir, cfg.StateDir+"/") {
			t.Errorf("spool.dir %s is not under state_dir %s", in.Spool.Dir, cfg.StateDir)
		}
	})

	t.Run("make-certs.sh makes certificates kube-apiserver and audittail accept", func(t *testing.T) {
		if _, err := exec.LookPath("openssl"); err != nil {
			t.Fatal("openssl not found: make-certs.sh needs it")
		}
		dir := t.TempDir()
		out, err := exec.Command("sh", "webhook/make-certs.sh", server.Hostname(), dir).CombinedOutput()
		if err != nil {
			t.Fatalf("make-certs.sh: %v\n%s", err, out)
		}
		for _, f := range certFiles {
			fi, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
			}
		}
		read := func(f string) []byte {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(read("ca.crt")) {
			t.Fatal("ca.crt holds no certificate")
		}
		serverCert, err := tls.X509KeyPair(read("server.crt"), read("server.key"))
		if err != nil {
			t.Fatalf("server.crt/server.key: %v", err)
		}
		clientCert, err := tls.X509KeyPair(read("client.crt"), read("client.key"))
		if err != nil {
			t.Fatalf("client.crt/client.key: %v", err)
		}
		token := strings.TrimSpace(string(read("token")))
		if len(token) < 32 {
			t.Errorf("token %q is short", token)
		}
		// A TLS server as the webhook input configures it, and a client as
		// kube-apiserver's webhook does, verifying the server for the IP
		// the kubeconfig names (and 127.0.0.1, for port-forward checks).
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if len(r.TLS.PeerCertificates) == 0 || r.Header.Get("Authorization") != "Bearer "+token {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			io.WriteString(w, "ok")
		}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: roots, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
		srv.StartTLS()
		defer srv.Close()
		_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
		for _, name := range []string{server.Hostname(), "127.0.0.1"} {
			client := &http.Client{Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}, ServerName: name},
			}}
			req, _ := http.NewRequest(http.MethodPost, "https://127.0.0.1:"+port+server.Path, strings.NewReader("{}"))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err != nil {
				t.Errorf("as %s: %v", name, err)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("as %s: %s", name, resp.Status)
			}
		}
		// The server certificate is no client certificate, and the other
		// way round: a stolen server key cannot post events.
		leaf, err := x509.ParseCertificate(serverCert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
			t.Errorf("server.crt is also valid for client authentication")
		}
	})
}

// overlayConfig parses the webhook overlay's ConfigMap config.
func overlayConfig(t *testing.T) *agent.Config {
	t.Helper()
	data, err := os.ReadFile("../manifests/overlays/webhook/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(data, &cm); err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.ParseConfig([]byte(cm.Data["config.yaml"]))
	if err != nil {
		t.Fatalf("manifests/overlays/webhook/configmap.yaml: %v", err)
	}
	return cfg
}
