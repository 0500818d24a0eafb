package netx

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// pair returns the two ends of a connection over a real listener: TCP on
// 127.0.0.1, or a unix socket.
func pair(t *testing.T, network string) (client, server net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// tlsPair returns the two ends of a TLS connection whose handshake is done.
// A TLS 1.3 server sends its session ticket after the handshake: it is
// pending at the client until the client reads.
func tlsPair(t *testing.T, version uint16) (client, server *tls.Conn) {
	t.Helper()
	c, s := pair(t, "tcp")
	cfg := &tls.Config{Certificates: []tls.Certificate{testCert(t)}, MinVersion: version, MaxVersion: version}
	server = tls.Server(s, cfg)
	client = tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: version, MaxVersion: version})
	done := make(chan error, 1)
	go func() { done <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return client, server
}

// eventually polls Probe until it says want: the peer's FIN or bytes take
// their time to arrive, however short. It fails only on a long stall.
func eventually(t *testing.T, c net.Conn, want State) {
	t.Helper()
	start := time.Now()
	for {
		got := Probe(c)
		if got == want {
			return
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("Probe = %v for 30 s, want %v", got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestProbe(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network+": an idle connection is open", func(t *testing.T) {
			c, _ := pair(t, network)
			if got := Probe(c); got != Open {
				t.Fatalf("Probe = %v, want open", got)
			}
		})
		t.Run(network+": a connection the peer closed is closed", func(t *testing.T) {
			c, s := pair(t, network)
			s.Close()
			eventually(t, c, Closed)
		})
		t.Run(network+": data from the peer is reported and consumed", func(t *testing.T) {
			c, s := pair(t, network)
			s.Write([]byte("a late ack"))
			eventually(t, c, Data)
			if got := Probe(c); got != Open {
				t.Fatalf("Probe after the data was read = %v, want open", got)
			}
		})
	}
	t.Run("a reset connection is closed", func(t *testing.T) {
		c, s := pair(t, "tcp")
		s.(*net.TCPConn).SetLinger(0) // close with RST
		s.Close()
		eventually(t, c, Closed)
	})
	t.Run("an expired read deadline does not make an open connection look closed", func(t *testing.T) {
		c, s := pair(t, "tcp")
		c.SetReadDeadline(time.Now().Add(-time.Second)) // as the last ack wait leaves it
		if got := Probe(c); got != Open {
			t.Fatalf("Probe = %v, want open", got)
		}
		// And Probe left no deadline: a read waits for the data.
		go s.Write([]byte("x"))
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil {
			t.Fatalf("read after Probe: %v", err)
		}
	})
}

func TestProbeTLS(t *testing.T) {
	for _, v := range []struct {
		name    string
		version uint16
	}{{"TLS 1.2", tls.VersionTLS12}, {"TLS 1.3", tls.VersionTLS13}} {
		t.Run(v.name+": pending session tickets leave it open, and the stream intact", func(t *testing.T) {
			c, s := tlsPair(t, v.version)
			time.Sleep(10 * time.Millisecond) // let a ticket arrive, if any
			if got := Probe(c); got != Open {
				t.Fatalf("Probe = %v, want open", got)
			}
			go func() {
				var b [4]byte
				io.ReadFull(s, b[:])
				s.Write([]byte("pong"))
			}()
			c.Write([]byte("ping"))
			var b [4]byte
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.ReadFull(c, b[:]); err != nil || string(b[:]) != "pong" {
				t.Fatalf("exchange after Probe: %q, %v", b, err)
			}
		})
		t.Run(v.name+": a close_notify is closed", func(t *testing.T) {
			c, s := tlsPair(t, v.version)
			s.Close()
			eventually(t, c, Closed)
		})
		t.Run(v.name+": application data is reported", func(t *testing.T) {
			c, s := tlsPair(t, v.version)
			s.Write([]byte("a late ack"))
			eventually(t, c, Data)
		})
	}
}
