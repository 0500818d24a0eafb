package outputs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLSOptions are the keys under an output's `tls:`. The server's
// certificate is always verified (against ca_file, else the system roots)
// unless insecure_skip_verify is set.
type TLSOptions struct {
	// CAFile is a PEM bundle of the CAs that sign the server's certificate;
	// it replaces the system roots (default: the system roots).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and key (mutual
	// TLS).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name the server's certificate must carry
	// (default: the host of the address).
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify turns verification off. Never in production.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// IsSet reports whether any key was given.
func (t TLSOptions) IsSet() bool { return t != TLSOptions{} }

// Config builds the client TLS configuration for host (the default server
// name). Errors name the tls.* key.
func (t TLSOptions) Config(host string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.ServerName != "" {
		c.ServerName = t.ServerName
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file: no PEM certificate in %s", t.CAFile)
		}
		c.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return nil, fmt.Errorf("tls.key_file: required with tls.cert_file")
	case t.KeyFile != "" && t.CertFile == "":
		return nil, fmt.Errorf("tls.cert_file: required with tls.key_file")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file and tls.key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
