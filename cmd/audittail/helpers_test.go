package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math"
	"math/big"
	"testing"
	"time"
)

// testKeyPair returns a self-signed certificate, usable as a CA and as a
// server certificate, and its private key, as PEM.
func testKeyPair(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "audittail test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

// stallLimit is how long the end-to-end and stress tests wait without
// progress before they fail. They set no limit on the total: make test
// shares two cores with other builds, and under that load the agent may be
// slow, but it must keep moving.
const stallLimit = 90 * time.Second

// waitProgress calls poll every interval until poll reports done. poll also
// returns a count of the work done so far (events received, bytes written);
// waitProgress returns an error only when that count has not grown past its
// highest value for stall.
func waitProgress(interval, stall time.Duration, poll func() (count int64, done bool)) error {
	best, since := int64(math.MinInt64), time.Now()
	for {
		count, done := poll()
		if done {
			return nil
		}
		if count > best {
			best, since = count, time.Now()
		} else if time.Since(since) >= stall {
			return fmt.Errorf("no progress for %s (stuck at %d)", stall, best)
		}
		time.Sleep(interval)
	}
}

func TestWaitProgress(t *testing.T) {
	const stall = 50 * time.Millisecond
	counter := func(steps []int64, doneAt int) func() (int64, bool) {
		i := 0
		return func() (int64, bool) {
			c := steps[i%len(steps)]
			i++
			return c, doneAt > 0 && i >= doneAt
		}
	}
	growing := make([]int64, 400)
	for i := range growing {
		growing[i] = int64(i)
	}
	tests := []struct {
		name    string
		poll    func() (int64, bool)
		stalled bool
	}{
		{"returns as soon as the work is done", counter([]int64{0}, 1), false},
		{"keeps waiting while the count grows, however long that takes", counter(growing, len(growing)), false},
		{"fails when the count stops growing", counter([]int64{7}, 0), true},
		{"a count that falls back is no progress", counter([]int64{1, 0}, 0), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := waitProgress(time.Millisecond, stall, tt.poll)
			if (err != nil) != tt.stalled {
				t.Fatalf("waitProgress = %v, stalled = %v", err, tt.stalled)
			}
			if tt.stalled && time.Since(start) < stall {
				t.Fatalf("gave up after %s, before a %s stall", time.Since(start), stall)
			}
		})
	}
}
