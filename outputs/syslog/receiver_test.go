package syslog

import (
	"bufio"
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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosyslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/octetcounting"
	"github.com/leodido/go-syslog/v4/rfc3164"
	"github.com/leodido/go-syslog/v4/rfc5424"
)

// receiver is a syslog server on 127.0.0.1 that decodes what it receives
// with github.com/leodido/go-syslog, independently of the sink.
type receiver struct {
	t       testing.TB
	scheme  string // tcp, tls or udp
	lf      bool   // non-transparent framing
	rfc3164 bool
	tls     *tls.Config
	addr    string // host:port

	mu     sync.Mutex
	ln     net.Listener
	pc     net.PacketConn
	conns  map[net.Conn]struct{}
	msgs   []gosyslog.Message
	errs   []error
	refuse int // connection attempts still to refuse (listener closed)
	wg     sync.WaitGroup
}

func newReceiver(t testing.TB, scheme string, mod func(*receiver)) *receiver {
	t.Helper()
	r := &receiver{t: t, scheme: scheme, conns: map[net.Conn]struct{}{}}
	if mod != nil {
		mod(r)
	}
	if scheme == "tls" && r.tls == nil {
		r.tls = testPKI(t).serverConfig()
	}
	if scheme == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r.pc, r.addr = pc, pc.LocalAddr().String()
		r.wg.Add(1)
		go r.readDatagrams(pc)
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r.addr = ln.Addr().String()
		r.serve(ln)
	}
	t.Cleanup(r.stop)
	return r
}

// url is the sink's address for this receiver.
func (r *receiver) url() string { return r.scheme + "://" + r.addr }

func (r *receiver) serve(ln net.Listener) {
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if r.tls != nil {
				c = tls.Server(c, r.tls)
			}
			r.mu.Lock()
			r.conns[c] = struct{}{}
			r.mu.Unlock()
			r.wg.Add(1)
			go r.readStream(c)
		}
	}()
}

func (r *receiver) readStream(c net.Conn) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		c.Close()
	}()
	if r.lf {
		// Non-transparent framing: one message per LF. go-syslog's
		// nontransparent package needs github.com/leodido/ragel-machinery,
		// which go.sum lacks; the split is trivial, the parsing is go-syslog's.
		m := r.machine()
		sc := bufio.NewScanner(c)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			msg, err := m.Parse(sc.Bytes())
			r.add(&gosyslog.Result{Message: msg, Error: err})
		}
		return
	}
	opts := []gosyslog.ParserOption{gosyslog.WithListener(r.add), gosyslog.WithMaxMessageLength(1 << 20)}
	var p gosyslog.Parser
	if r.rfc3164 {
		p = octetcounting.NewParserRFC3164(opts...)
	} else {
		p = octetcounting.NewParser(append(opts, gosyslog.WithMachineOptions(rfc5424.WithCompliantMsg()))...)
	}
	p.Parse(c)
}

func (r *receiver) machine() gosyslog.Machine {
	if r.rfc3164 {
		return rfc3164.NewParser()
	}
	return rfc5424.NewParser(rfc5424.WithCompliantMsg())
}

func (r *receiver) readDatagrams(pc net.PacketConn) {
	defer r.wg.Done()
	m := r.machine()
	buf := make([]byte, 65536)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		msg, err := m.Parse(buf[:n])
		r.add(&gosyslog.Result{Message: msg, Error: err})
	}
}

func (r *receiver) add(res *gosyslog.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if res.Error != nil {
		if strings.HasPrefix(res.Error.Error(), "found EOF, expecting a MSGLEN") {
			return // the stream ended between two messages
		}
		r.errs = append(r.errs, res.Error)
		return
	}
	r.msgs = append(r.msgs, res.Message)
}

// messages returns what was received and fails the test on a message the
// parser rejected.
func (r *receiver) messages() []gosyslog.Message {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) > 0 {
		r.t.Fatalf("the receiver could not parse %d messages; first: %v", len(r.errs), r.errs[0])
	}
	return append([]gosyslog.Message(nil), r.msgs...)
}

// wait waits until n messages arrived.
func (r *receiver) wait(n int) []gosyslog.Message {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs := r.messages()
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("received %d messages, want %d", len(msgs), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// auditIDs returns the auditID SD-PARAM of every RFC 5424 message received.
func (r *receiver) auditIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, m := range r.msgs {
		sm, ok := m.(*rfc5424.SyslogMessage)
		if !ok || sm.StructuredData == nil {
			continue
		}
		ids = append(ids, (*sm.StructuredData)[DefaultSDID]["auditID"])
	}
	return ids
}

func (r *receiver) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs, r.errs = nil, nil
}

// closeConns closes every accepted connection (a receiver restart).
func (r *receiver) closeConns() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		if tc, ok := c.(*tls.Conn); ok {
			tc.NetConn().Close()
		} else {
			c.Close()
		}
	}
}

// failNext makes the receiver go down: it closes its connections and its
// listener, so that the next n connection attempts are refused by the
// kernel; then it listens again on the same port. dialed must be installed
// as the sink's dial hook, to count the attempts.
func (r *receiver) failNext(n int) {
	r.mu.Lock()
	r.refuse = n
	ln := r.ln
	r.mu.Unlock()
	ln.Close()
	r.closeConns()
}

func (r *receiver) dialed(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil || r.refuse == 0 {
		return
	}
	r.refuse--
	if r.refuse > 0 {
		return
	}
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Errorf("cannot listen again on %s: %v", r.addr, err)
		return
	}
	r.mu.Unlock()
	r.serve(ln)
	r.mu.Lock()
}

func (r *receiver) stop() {
	r.mu.Lock()
	ln, pc := r.ln, r.pc
	r.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	if pc != nil {
		pc.Close()
	}
	r.closeConns()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		r.t.Errorf("receiver goroutines did not stop")
	}
}

// pki is a test CA and a certificate it issued for 127.0.0.1 and
// localhost, written as PEM files.
type pki struct {
	dir                           string
	caFile, certFile, keyFile     string
	clientCertFile, clientKeyFile string
	ca                            *x509.CertPool
	server, client                tls.Certificate
}

func testPKI(t testing.TB) *pki {
	t.Helper()
	dir := t.TempDir()
	p := &pki{dir: dir, caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "server.pem"), keyFile: filepath.Join(dir, "server-key.pem"),
		clientCertFile: filepath.Join(dir, "client.pem"), clientKeyFile: filepath.Join(dir, "client-key.pem")}
	caKey, caDER := newCert(t, nil, nil, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "audittail test CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	})
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	p.ca = x509.NewCertPool()
	p.ca.AddCert(caCert)

	srvKey, srvDER := newCert(t, caCert, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	writePEM(t, p.certFile, "CERTIFICATE", srvDER)
	writeKey(t, p.keyFile, srvKey)
	p.server = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}

	cliKey, cliDER := newCert(t, caCert, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "audittail"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	writePEM(t, p.clientCertFile, "CERTIFICATE", cliDER)
	writeKey(t, p.clientKeyFile, cliKey)
	p.client = tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
	return p
}

func tlsServer(c net.Conn, p *pki) net.Conn { return tls.Server(c, p.serverConfig()) }

func (p *pki) serverConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}
}

var serial atomic.Int64

func newCert(t testing.TB, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeKey(t testing.TB, path string, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "PRIVATE KEY", der)
}
