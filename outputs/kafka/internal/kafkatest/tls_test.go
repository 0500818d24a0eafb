package kafkatest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/kafka"
	"github.com/audittail/audittail/outputs/outputstest"
)

// testCA returns a CA's PEM file and a server certificate it signed for
// 127.0.0.1.
func testCA(t *testing.T) (caFile string, server tls.Certificate, pool *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kafkatest CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	pool = x509.NewCertPool()
	pool.AddCert(caCert)
	return caFile, tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}, pool
}

// TestTLS produces over TLS to kfake serving a certificate of a test CA:
// with tls.ca_file every event is read back (by a consumer over TLS);
// without it (the system roots) the send fails, retryably, and names TLS.
func TestTLS(t *testing.T) {
	caFile, cert, pool := testCA(t)
	c := newCluster(t, kfake.NumBrokers(1), kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	brokers := c.ListenAddrs()
	clientTLS := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	admin, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DialTLSConfig(clientTLS))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := kadm.NewClient(admin).CreateTopic(ctx, 1, 1, nil, "audit"); err != nil || resp.Err != nil {
		t.Fatalf("create topic over TLS: %v %v", err, resp.Err)
	}

	o, err := kafka.New(kafka.Options{Brokers: brokers, Topic: "audit", Timeout: 5 * time.Second, TLS: &kafka.TLSOptions{CAFile: caFile}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	b, ids := outputstest.NewBatch(71, 200)
	if err := o.Send(context.Background(), b); err != nil {
		t.Fatalf("Send over TLS: %v", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DialTLSConfig(clientTLS), kgo.ConsumeTopics("audit"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[string]bool{}
	for deadline := time.Now().Add(20 * time.Second); len(seen) < len(ids) && time.Now().Before(deadline); {
		fctx, fcancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(fctx)
		fcancel()
		fs.EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == "auditID" {
					seen[string(h.Value)] = true
				}
			}
		})
	}
	for _, id := range ids {
		if !seen[id] {
			t.Fatalf("event %s not read back over TLS (%d of %d)", id, len(seen), len(ids))
		}
	}

	// The system roots do not know the test CA: nothing is delivered,
	// and the error is retryable.
	bad, err := kafka.New(kafka.Options{Brokers: brokers, Topic: "audit", Timeout: 3 * time.Second, TLS: &kafka.TLSOptions{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close(context.Background())
	err = bad.Send(context.Background(), b)
	if err == nil || outputs.IsPermanent(err) {
		t.Fatalf("Send with an unknown CA = %v, want a retryable error", err)
	}
	if !strings.Contains(strings.ToLower(err.Error()), "certificate") && !strings.Contains(err.Error(), "tls") {
		t.Errorf("the error does not say the certificate is not trusted: %v", err)
	}
}
