package webhook

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// kubeconfig is the part of a kubeconfig file (the format of
// kube-apiserver's --audit-webhook-config-file) that says where to post
// and how to authenticate. Other keys (preferences, extensions) are
// ignored, as clientcmd ignores what it does not use.
type kubeconfig struct {
	Clusters []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server                   string `yaml:"server"`
			CertificateAuthority     string `yaml:"certificate-authority"`
			CertificateAuthorityData string `yaml:"certificate-authority-data"`
			InsecureSkipTLSVerify    bool   `yaml:"insecure-skip-tls-verify"`
			TLSServerName            string `yaml:"tls-server-name"`
			ProxyURL                 string `yaml:"proxy-url"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		Name string `yaml:"name"`
		User struct {
			Token                 string    `yaml:"token"`
			TokenFile             string    `yaml:"tokenFile"`
			ClientCertificate     string    `yaml:"client-certificate"`
			ClientCertificateData string    `yaml:"client-certificate-data"`
			ClientKey             string    `yaml:"client-key"`
			ClientKeyData         string    `yaml:"client-key-data"`
			Username              string    `yaml:"username"`
			Password              string    `yaml:"password"`
			Exec                  yaml.Node `yaml:"exec"`
			AuthProvider          yaml.Node `yaml:"auth-provider"`
		} `yaml:"user"`
	} `yaml:"users"`
	Contexts []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
			User    string `yaml:"user"`
		} `yaml:"context"`
	} `yaml:"contexts"`
	CurrentContext string `yaml:"current-context"`
}

// target is what a kubeconfig resolves to.
type target struct {
	server        string
	caPEM         []byte
	insecure      bool
	serverName    string
	token         string // a literal token
	tokenFile     string
	cert          *tls.Certificate
	basicUser     string
	basicPassword string
}

// loadKubeconfig reads path and resolves its current context (or its only
// context, or its only cluster and user), with relative file names taken
// from the file's directory, as clientcmd does. Errors name the file.
func loadKubeconfig(path string) (*target, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig_file: %w", err)
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(data, &kc); err != nil {
		return nil, fmt.Errorf("kubeconfig_file: %s: %w", path, err)
	}
	fail := func(format string, a ...any) error {
		return fmt.Errorf("kubeconfig_file: %s: %s", path, fmt.Sprintf(format, a...))
	}
	clusterName, userName := "", ""
	switch {
	case kc.CurrentContext != "":
		found := false
		for _, c := range kc.Contexts {
			if c.Name == kc.CurrentContext {
				clusterName, userName, found = c.Context.Cluster, c.Context.User, true
			}
		}
		if !found {
			return nil, fail("current-context %q is not among its contexts", kc.CurrentContext)
		}
	case len(kc.Contexts) == 1:
		clusterName, userName = kc.Contexts[0].Context.Cluster, kc.Contexts[0].Context.User
	case len(kc.Contexts) == 0 && len(kc.Clusters) == 1 && len(kc.Users) <= 1:
		clusterName = kc.Clusters[0].Name
		if len(kc.Users) == 1 {
			userName = kc.Users[0].Name
		}
	default:
		return nil, fail("no current-context, and not exactly one context to use")
	}
	dir := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	t := &target{}
	found := false
	for _, c := range kc.Clusters {
		if c.Name != clusterName {
			continue
		}
		found = true
		cl := c.Cluster
		if cl.Server == "" {
			return nil, fail("cluster %q has no server", clusterName)
		}
		if cl.ProxyURL != "" {
			return nil, fail("cluster %q: proxy-url is not supported (use the HTTPS_PROXY environment variable)", clusterName)
		}
		t.server, t.insecure, t.serverName = cl.Server, cl.InsecureSkipTLSVerify, cl.TLSServerName
		switch {
		case cl.CertificateAuthorityData != "":
			if t.caPEM, err = base64.StdEncoding.DecodeString(cl.CertificateAuthorityData); err != nil {
				return nil, fail("cluster %q: certificate-authority-data is not base64: %v", clusterName, err)
			}
		case cl.CertificateAuthority != "":
			if t.caPEM, err = os.ReadFile(rel(cl.CertificateAuthority)); err != nil {
				return nil, fail("cluster %q: certificate-authority: %v", clusterName, err)
			}
		}
	}
	if !found {
		return nil, fail("cluster %q is not among its clusters", clusterName)
	}
	if userName == "" {
		return t, nil
	}
	found = false
	for _, u := range kc.Users {
		if u.Name != userName {
			continue
		}
		found = true
		us := u.User
		if !us.Exec.IsZero() || !us.AuthProvider.IsZero() {
			return nil, fail("user %q: exec and auth-provider credentials are not supported (use token, tokenFile or a client certificate)", userName)
		}
		t.token, t.tokenFile = us.Token, rel(us.TokenFile)
		t.basicUser, t.basicPassword = us.Username, us.Password
		certPEM, keyPEM := []byte(nil), []byte(nil)
		decode := func(key, v string) ([]byte, error) {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return nil, fail("user %q: %s is not base64: %v", userName, key, err)
			}
			return b, nil
		}
		switch {
		case us.ClientCertificateData != "":
			if certPEM, err = decode("client-certificate-data", us.ClientCertificateData); err != nil {
				return nil, err
			}
		case us.ClientCertificate != "":
			if certPEM, err = os.ReadFile(rel(us.ClientCertificate)); err != nil {
				return nil, fail("user %q: client-certificate: %v", userName, err)
			}
		}
		switch {
		case us.ClientKeyData != "":
			if keyPEM, err = decode("client-key-data", us.ClientKeyData); err != nil {
				return nil, err
			}
		case us.ClientKey != "":
			if keyPEM, err = os.ReadFile(rel(us.ClientKey)); err != nil {
				return nil, fail("user %q: client-key: %v", userName, err)
			}
		}
		switch {
		case certPEM != nil && keyPEM != nil:
			cert, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				return nil, fail("user %q: client certificate and key: %v", userName, err)
			}
			t.cert = &cert
		case certPEM != nil || keyPEM != nil:
			return nil, fail("user %q: a client certificate needs both the certificate and the key", userName)
		}
	}
	if !found {
		return nil, fail("user %q is not among its users", userName)
	}
	return t, nil
}

// apply adds the kubeconfig's CA, server name and client certificate to
// c (keys under tls: win where both are set).
func (t *target) apply(c *tls.Config, o TLSOptions) error {
	if t.caPEM != nil && o.CAFile == "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(t.caPEM) {
			return errors.New("kubeconfig_file: the cluster's certificate authority holds no PEM certificate")
		}
		c.RootCAs = pool
	}
	if t.serverName != "" && o.ServerName == "" {
		c.ServerName = t.serverName
	}
	if t.insecure && !o.InsecureSkipVerify {
		c.InsecureSkipVerify = true
	}
	if t.cert != nil && o.CertFile == "" {
		c.Certificates = []tls.Certificate{*t.cert}
	}
	return nil
}
