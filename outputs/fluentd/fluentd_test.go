package fluentd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/fluentd/fluentdtest"
	"github.com/audittail/audittail/outputs/outputstest"
	"github.com/audittail/audittail/parser"
	"github.com/audittail/audittail/parser/auditgen"
)

// startReceiver starts a receiver that is closed, and checked for protocol
// errors, when the test ends.
func startReceiver(t *testing.T, cfg fluentdtest.Config) *fluentdtest.Receiver {
	t.Helper()
	r, err := fluentdtest.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		for _, err := range r.Errors() {
			t.Errorf("receiver: %v", err)
		}
	})
	return r
}

func newOutput(t *testing.T, o Options) *Output {
	t.Helper()
	out, err := New(o, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { out.Close(context.Background()) })
	return out
}

func send(t *testing.T, o *Output, b *outputs.Batch) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return o.Send(ctx, b)
}

// oddLines are lines an audit log should not hold but may: they must arrive
// intact all the same.
var oddLines = []string{
	`this is not JSON at all`,
	`{"truncated": "event`,
	`["an", "array"]`,
	`{"kind":"Event","auditID":"odd-numbers","stage":"ResponseComplete","n":[0,-0,1,-1,127,128,-33,255,256,65536,4294967296,-9223372036854775808,18446744073709551615,1.5,-2.25e-3,1e300,1.0],"requestReceivedTimestamp":"2026-11-23T10:54:44.000001Z"}`,
	`{"kind":"Event","auditID":"escapes","stageTimestamp":"2026-11-23T11:54:44.5+01:00","s":"tab\tquote\"slash\\ unicode \u00e9 \ud83d\ude00","empty":{},"none":null,"t":true}`,
	`{"kind":"Event","auditID":"no-times"}`,
}

// genBatch returns a parsed batch of n generated events.
func genBatch(seed uint64, n int, level auditgen.Level) *outputs.Batch {
	g := auditgen.New(seed)
	b := &outputs.Batch{Input: "audit.log"}
	ts := time.Date(2026, 11, 23, 10, 54, 44, 671393000, time.UTC)
	var buf []byte
	for i := range n {
		buf = g.Append(buf[:0], level, ts.Add(time.Duration(i)*time.Microsecond))
		b.Append(bytes.TrimSuffix(buf, []byte("\n")))
	}
	b.Parse(nil)
	return b
}

// testBatch returns a parsed batch of n generated events followed by the
// odd lines.
func testBatch(seed uint64, n int, level auditgen.Level) *outputs.Batch {
	b := genBatch(seed, n, level)
	for _, l := range oddLines {
		b.Append([]byte(l))
	}
	b.Parse(nil)
	return b
}

// wantRecord is what a line must arrive as: encoding/json's reading of it,
// or {"message": line} when it is not a JSON object.
func wantRecord(t *testing.T, line []byte) map[string]any {
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil || d.More() {
		return map[string]any{"message": string(line)}
	}
	return normalize(m).(map[string]any)
}

// normalize makes numbers comparable: every integer becomes an int64 (or a
// uint64 above MaxInt64), every other number a float64.
func normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = normalize(x)
		}
		return v
	case []any:
		for i, x := range v {
			v[i] = normalize(x)
		}
		return v
	case json.Number:
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			return u
		}
		f, _ := v.Float64()
		return f
	case uint64:
		if v <= 1<<63-1 {
			return int64(v)
		}
		return v
	case int64, float64, string, bool, nil:
		return v
	case []byte:
		return string(v)
	}
	return v
}

// wantTime is the entry time a line must carry, or the zero time when it
// has none (sent with the time of sending).
func wantTime(line []byte) time.Time {
	var ev struct {
		Stage    string `json:"stageTimestamp"`
		Received string `json:"requestReceivedTimestamp"`
	}
	if json.Unmarshal(line, &ev) != nil {
		return time.Time{}
	}
	for _, s := range []string{ev.Stage, ev.Received} {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// checkEntries checks that the receiver holds exactly the lines of b, in
// order, as records with the right time and tag.
func checkEntries(t *testing.T, b *outputs.Batch, got []fluentdtest.Entry, tag string, sent time.Time) {
	t.Helper()
	if len(got) != b.Len() {
		t.Fatalf("received %d entries, want %d", len(got), b.Len())
	}
	for i, e := range got {
		line := b.Line(i)
		if e.Tag != tag {
			t.Errorf("entry %d: tag %q, want %q", i, e.Tag, tag)
		}
		if want := wantRecord(t, line); !reflect.DeepEqual(normalize(e.Record), want) {
			t.Errorf("entry %d: record\n got  %v\n want %v", i, e.Record, want)
		}
		want := wantTime(line)
		if want.IsZero() {
			if e.Time.Before(sent.Add(-time.Second)) || e.Time.After(time.Now().Add(time.Second)) {
				t.Errorf("entry %d (no timestamp): time %v, want the time of sending %v", i, e.Time, sent)
			}
		} else if !e.Time.Equal(want) {
			t.Errorf("entry %d: time %v, want %v", i, e.Time, want)
		}
	}
}

func TestPackedForwardRoundTrip(t *testing.T) {
	for _, level := range []auditgen.Level{auditgen.Metadata, auditgen.RequestResponse} {
		t.Run(level.String(), func(t *testing.T) {
			r := startReceiver(t, fluentdtest.Config{})
			o := newOutput(t, Options{Address: r.Addr(), Tag: "kube.audit.test"})
			b := testBatch(1, 300, level)
			sent := time.Now()
			if err := send(t, o, b); err != nil {
				t.Fatalf("Send: %v", err)
			}
			checkEntries(t, b, r.Entries(), "kube.audit.test", sent)
			msgs := r.Messages()
			if len(msgs) != 1 {
				t.Fatalf("the batch arrived as %d messages, want 1", len(msgs))
			}
			m := msgs[0]
			if m.Mode != "PackedForward" || m.Size != b.Len() || m.Chunk == "" || m.Compressed != "" {
				t.Errorf("message = %+v, want PackedForward with size %d and a chunk", m, b.Len())
			}
		})
	}
}

func TestDefaultTag(t *testing.T) {
	r := startReceiver(t, fluentdtest.Config{})
	o := newOutput(t, Options{Address: "tcp://" + r.Addr()})
	if err := send(t, o, testBatch(2, 3, auditgen.Metadata)); err != nil {
		t.Fatal(err)
	}
	if m := r.Messages(); len(m) != 1 || m[0].Tag != "kube.audit" {
		t.Fatalf("messages %+v, want one tagged kube.audit", m)
	}
}

func TestGzipCompressedPackedForward(t *testing.T) {
	r := startReceiver(t, fluentdtest.Config{})
	o := newOutput(t, Options{Address: r.Addr(), Compress: "gzip"})
	var sent time.Time
	for i := range 3 { // the compressor is reused between batches
		r.Reset()
		b := testBatch(uint64(10+i), 500, auditgen.Request)
		sent = time.Now()
		if err := send(t, o, b); err != nil {
			t.Fatalf("Send: %v", err)
		}
		checkEntries(t, b, r.Entries(), DefaultTag, sent)
		m := r.Messages()
		if len(m) != 1 || m[0].Mode != "CompressedPackedForward" || m[0].Compressed != "gzip" || m[0].Size != b.Len() {
			t.Fatalf("messages %+v, want one CompressedPackedForward (gzip) of %d", m, b.Len())
		}
	}
}

func TestReceiverIDsOnlyKeepsJustTheAuditID(t *testing.T) {
	r := startReceiver(t, fluentdtest.Config{IDsOnly: true})
	o := newOutput(t, Options{Address: r.Addr(), Compress: "gzip"})
	b := testBatch(4, 200, auditgen.RequestResponse)
	if err := send(t, o, b); err != nil {
		t.Fatalf("Send: %v", err)
	}
	var want []string
	for i := range b.Len() {
		id, _ := wantRecord(t, b.Line(i))["auditID"].(string)
		want = append(want, id)
	}
	if got := r.AuditIDs(); !slices.Equal(got, want) {
		t.Fatalf("auditIDs\n got  %q\n want %q", got, want)
	}
	for i, e := range r.Entries() {
		if len(e.Record) > 1 || (len(e.Record) == 1 && e.Record["auditID"] == nil) {
			t.Fatalf("entry %d: record %v, want only the auditID", i, e.Record)
		}
	}
}

func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fluentd.sock")
	r := startReceiver(t, fluentdtest.Config{Network: "unix", Address: path})
	o := newOutput(t, Options{Address: "unix://" + path})
	b := testBatch(3, 100, auditgen.Metadata)
	sent := time.Now()
	if err := send(t, o, b); err != nil {
		t.Fatalf("Send: %v", err)
	}
	checkEntries(t, b, r.Entries(), DefaultTag, sent)
}

func TestEmptyBatchSendsNothing(t *testing.T) {
	r := startReceiver(t, fluentdtest.Config{})
	o := newOutput(t, Options{Address: r.Addr()})
	if err := send(t, o, &outputs.Batch{}); err != nil {
		t.Fatal(err)
	}
	if m := r.Messages(); len(m) != 0 {
		t.Fatalf("an empty batch sent %d messages", len(m))
	}
}

// ids returns the auditIDs of b's lines that have one.
func ids(b *outputs.Batch) []string {
	var out []string
	for i := range b.Len() {
		if ev := b.Event(i); ev != nil {
			id, _ := parser.Unquote(nil, ev.AuditID)
			out = append(out, string(id))
		}
	}
	return out
}

func countIDs(got []string) map[string]int {
	n := map[string]int{}
	for _, id := range got {
		n[id]++
	}
	return n
}

func TestAckWithheld(t *testing.T) {
	t.Run("the batch is resent and nothing is lost", func(t *testing.T) {
		r := startReceiver(t, fluentdtest.Config{})
		o := newOutput(t, Options{Address: r.Addr(), AckTimeout: 300 * time.Millisecond})
		first, second := genBatch(20, 50, auditgen.Metadata), genBatch(21, 50, auditgen.Metadata)
		if err := send(t, o, first); err != nil {
			t.Fatal(err)
		}
		r.WithholdAcks(1, false) // the receiver loses the batch and says nothing
		err := send(t, o, second)
		if err == nil || !strings.Contains(err.Error(), "no ack") || !strings.Contains(err.Error(), r.Addr()) {
			t.Fatalf("Send without an ack = %v, want an error saying no ack came from %s", err, r.Addr())
		}
		if outputs.IsPermanent(err) {
			t.Fatalf("a missing ack is reported as permanent: %v", err)
		}
		if err := send(t, o, second); err != nil { // what the agent does
			t.Fatalf("resend: %v", err)
		}
		got := countIDs(r.AuditIDs())
		for _, id := range append(ids(first), ids(second)...) {
			if got[id] != 1 {
				t.Errorf("event %s received %d times, want once", id, got[id])
			}
		}
	})
	t.Run("a receiver that kept the batch sees it twice, never a gap", func(t *testing.T) {
		r := startReceiver(t, fluentdtest.Config{})
		o := newOutput(t, Options{Address: r.Addr(), AckTimeout: 300 * time.Millisecond})
		b := genBatch(22, 50, auditgen.Metadata)
		r.WithholdAcks(1, true)
		if err := send(t, o, b); err == nil {
			t.Fatal("Send returned nil without an ack")
		}
		if err := send(t, o, b); err != nil {
			t.Fatalf("resend: %v", err)
		}
		got := countIDs(r.AuditIDs())
		for _, id := range ids(b) {
			if got[id] != 2 {
				t.Errorf("event %s received %d times, want twice", id, got[id])
			}
		}
	})
	t.Run("a cancelled context ends the wait at once", func(t *testing.T) {
		r := startReceiver(t, fluentdtest.Config{})
		o := newOutput(t, Options{Address: r.Addr(), AckTimeout: time.Hour})
		r.WithholdAcks(1, false)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- o.Send(ctx, genBatch(23, 10, auditgen.Metadata)) }()
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Send = %v, want the context's error", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Send ignored its context while waiting for an ack")
		}
		b := genBatch(24, 10, auditgen.Metadata)
		if err := send(t, o, b); err != nil {
			t.Fatalf("Send after a cancelled one: %v", err)
		}
	})
}

func TestReceiverRestart(t *testing.T) {
	t.Run("the next Send reconnects", func(t *testing.T) {
		r, err := fluentdtest.Start(fluentdtest.Config{})
		if err != nil {
			t.Fatal(err)
		}
		addr := r.Addr()
		o := newOutput(t, Options{Address: addr})
		var want []string
		defer func() {
			if c := r.Connections(); c != 1 {
				t.Errorf("the first receiver saw %d connections, want 1 (kept alive)", c)
			}
		}()
		for i := range 3 {
			b := genBatch(uint64(30+i), 40, auditgen.Metadata)
			if err := send(t, o, b); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
			want = append(want, ids(b)...)
		}
		got := r.AuditIDs()
		r.Close() // the receiver restarts: same address, new process
		r2 := startReceiver(t, fluentdtest.Config{Address: addr})
		for i := range 3 {
			b := genBatch(uint64(40+i), 40, auditgen.Metadata)
			if err := send(t, o, b); err != nil {
				t.Fatalf("Send %d after the restart: %v", i, err)
			}
			want = append(want, ids(b)...)
		}
		got = append(got, r2.AuditIDs()...)
		if !slices.Equal(got, want) {
			t.Fatalf("received %d events, want %d in order", len(got), len(want))
		}
	})
	t.Run("a down receiver is an error until it is back", func(t *testing.T) {
		r, err := fluentdtest.Start(fluentdtest.Config{})
		if err != nil {
			t.Fatal(err)
		}
		addr := r.Addr()
		o := newOutput(t, Options{Address: addr})
		if err := send(t, o, genBatch(50, 10, auditgen.Metadata)); err != nil {
			t.Fatal(err)
		}
		r.Close()
		b := genBatch(51, 10, auditgen.Metadata)
		err = send(t, o, b)
		if err == nil || !strings.Contains(err.Error(), "cannot connect to fluentd at "+addr) {
			t.Fatalf("Send to a stopped receiver = %v, want cannot connect to fluentd at %s", err, addr)
		}
		r2 := startReceiver(t, fluentdtest.Config{Address: addr})
		if err := send(t, o, b); err != nil {
			t.Fatalf("Send once the receiver is back: %v", err)
		}
		if got := r2.AuditIDs(); !slices.Equal(got, ids(b)) {
			t.Fatalf("received %v, want %v", got, ids(b))
		}
	})
	t.Run("a connection dropped mid-batch is an error, the resend delivers", func(t *testing.T) {
		r := startReceiver(t, fluentdtest.Config{})
		o := newOutput(t, Options{Address: r.Addr()})
		if err := send(t, o, genBatch(52, 10, auditgen.Metadata)); err != nil {
			t.Fatal(err)
		}
		r.DropConnections(1)
		b := genBatch(53, 10, auditgen.Metadata)
		if err := send(t, o, b); err == nil {
			t.Fatal("Send returned nil although the receiver dropped the connection")
		}
		if err := send(t, o, b); err != nil {
			t.Fatalf("resend: %v", err)
		}
		if got := countIDs(r.AuditIDs()); got[ids(b)[0]] != 1 {
			t.Fatalf("event received %d times, want once", got[ids(b)[0]])
		}
	})
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSharedKey(t *testing.T) {
	key := writeFile(t, "shared_key", "s3cret\n")
	t.Run("the right key is accepted", func(t *testing.T) {
		r := startReceiver(t, fluentdtest.Config{SharedKey: "s3cret"})
		o := newOutput(t, Options{Address: r.Addr(), SharedKeyFile: key, SelfHostname: "node-1"})
		for i := range 2 {
			b := genBatch(uint64(60+i), 20, auditgen.Metadata)
			if err := send(t, o, b); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
		}
		if n := len(r.AuditIDs()); n != 40 {
			t.Fatalf("received %d events, want 40", n)
		}
	})
	t.Run("the key can come from the environment", func(t *testing.T) {
		t.Setenv("AUDITTAIL_TEST_FLUENTD_KEY", "env-key")
		r := startReceiver(t, fluentdtest.Config{SharedKey: "env-key"})
		o := newOutput(t, Options{Address: r.Addr(), SharedKeyEnv: "AUDITTAIL_TEST_FLUENTD_KEY"})
		if err := send(t, o, genBatch(62, 5, auditgen.Metadata)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("username and password are accepted", func(t *testing.T) {
		r := startReceiver(t, fluentdtest.Config{SharedKey: "s3cret", Users: map[string]string{"audittail": "pw"}})
		o := newOutput(t, Options{Address: r.Addr(), SharedKeyFile: key, Username: "audittail", PasswordFile: writeFile(t, "pw", "pw\n")})
		if err := send(t, o, genBatch(63, 5, auditgen.Metadata)); err != nil {
			t.Fatal(err)
		}
	})
	for _, tc := range []struct {
		name string
		cfg  fluentdtest.Config
		opts Options
		want []string
	}{
		{
			name: "a wrong key is refused, naming shared_key",
			cfg:  fluentdtest.Config{SharedKey: "other"},
			opts: Options{SharedKeyFile: key},
			want: []string{"refused the shared_key handshake", "shared_key mismatch"},
		},
		{
			name: "a wrong password is refused",
			cfg:  fluentdtest.Config{SharedKey: "s3cret", Users: map[string]string{"audittail": "pw"}},
			opts: Options{SharedKeyFile: key, Username: "audittail", PasswordFile: writeFile(t, "bad", "nope")},
			want: []string{"refused the shared_key handshake", "username/password mismatch"},
		},
		{
			name: "a receiver that wants a key tells a client that has none",
			cfg:  fluentdtest.Config{SharedKey: "s3cret"},
			opts: Options{},
			want: []string{"requires a shared_key handshake", "shared_key_file"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startReceiver(t, tc.cfg)
			tc.opts.Address = r.Addr()
			o := newOutput(t, tc.opts)
			for range 2 { // the same answer every time
				err := send(t, o, genBatch(64, 5, auditgen.Metadata))
				if !errors.Is(err, ErrAuth) {
					t.Fatalf("Send = %v, want an ErrAuth", err)
				}
				for _, w := range append(tc.want, r.Addr()) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "nope") {
					t.Errorf("error %q shows a secret", err)
				}
			}
			if err := o.Check(context.Background()); !errors.Is(err, ErrAuth) {
				t.Errorf("Check = %v, want an ErrAuth", err)
			}
			if n := len(r.AuditIDs()); n != 0 {
				t.Errorf("the receiver took %d events from a client it refused", n)
			}
		})
	}
	t.Run("a HELO that denies keepalive gets one connection per batch", func(t *testing.T) {
		r := startReceiver(t, fluentdtest.Config{SharedKey: "s3cret", DenyKeepalive: true})
		o := newOutput(t, Options{Address: r.Addr(), SharedKeyFile: key})
		for i := range 3 {
			if err := send(t, o, genBatch(uint64(66+i), 5, auditgen.Metadata)); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
		}
		if n, c := len(r.AuditIDs()), r.Connections(); n != 15 || c != 3 {
			t.Fatalf("received %d events on %d connections, want 15 on 3", n, c)
		}
	})
	t.Run("a receiver without a key is reported when no HELO comes", func(t *testing.T) {
		r := startReceiver(t, fluentdtest.Config{})
		o := newOutput(t, Options{Address: r.Addr(), SharedKeyFile: key, DialTimeout: 300 * time.Millisecond})
		err := send(t, o, genBatch(65, 5, auditgen.Metadata))
		if err == nil || !strings.Contains(err.Error(), "no HELO") {
			t.Fatalf("Send = %v, want an error saying no HELO came", err)
		}
	})
}

// testPKI writes a CA and a certificate it signed for 127.0.0.1, returning
// the file names.
type testPKI struct {
	caFile, certFile, keyFile string
	cert                      tls.Certificate
	pool                      *x509.CertPool
}

func newPKI(t *testing.T, name string) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "fluentd.test"},
		DNSNames:     []string{"fluentd.test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{
		caFile:   filepath.Join(dir, "ca.pem"),
		certFile: filepath.Join(dir, "cert.pem"),
		keyFile:  filepath.Join(dir, "key.pem"),
		pool:     x509.NewCertPool(),
	}
	p.pool.AddCert(ca)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	os.WriteFile(p.certFile, certPEM, 0o600)
	os.WriteFile(p.keyFile, keyPEM, 0o600)
	if p.cert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTLS(t *testing.T) {
	server, client, other := newPKI(t, "server"), newPKI(t, "client"), newPKI(t, "other")
	serverTLS := &tls.Config{Certificates: []tls.Certificate{server.cert}}
	t.Run("a certificate signed by ca_file is trusted", func(t *testing.T) {
		r := startReceiver(t, fluentdtest.Config{TLS: serverTLS, SharedKey: "k"})
		o := newOutput(t, Options{Address: "tls://" + r.Addr(), TLS: TLSOptions{CAFile: server.caFile}, SharedKeyFile: writeFile(t, "k", "k")})
		b := testBatch(70, 100, auditgen.Metadata)
		sent := time.Now()
		if err := send(t, o, b); err != nil {
			t.Fatalf("Send: %v", err)
		}
		checkEntries(t, b, r.Entries(), DefaultTag, sent)
		if err := o.Check(context.Background()); err != nil {
			t.Fatalf("Check: %v", err)
		}
	})
	t.Run("server_name is checked against the certificate", func(t *testing.T) {
		r := startReceiver(t, fluentdtest.Config{TLS: serverTLS})
		o := newOutput(t, Options{Address: "tls://" + r.Addr(), TLS: TLSOptions{CAFile: server.caFile, ServerName: "fluentd.test"}})
		if err := send(t, o, genBatch(71, 5, auditgen.Metadata)); err != nil {
			t.Fatalf("Send: %v", err)
		}
		o = newOutput(t, Options{Address: "tls://" + r.Addr(), TLS: TLSOptions{CAFile: server.caFile, ServerName: "elsewhere.test"}})
		if err := send(t, o, genBatch(71, 5, auditgen.Metadata)); err == nil {
			t.Fatal("a certificate for another name was accepted")
		}
	})
	t.Run("a certificate from another CA is refused", func(t *testing.T) {
		r := startReceiver(t, fluentdtest.Config{TLS: serverTLS})
		o := newOutput(t, Options{Address: "tls://" + r.Addr(), TLS: TLSOptions{CAFile: other.caFile}})
		err := send(t, o, genBatch(72, 5, auditgen.Metadata))
		var uerr x509.UnknownAuthorityError
		if !errors.As(err, &uerr) || !strings.Contains(err.Error(), "cannot connect to fluentd at tls://"+r.Addr()) {
			t.Fatalf("Send = %v, want an unknown authority error naming the address", err)
		}
		if err := o.Check(context.Background()); !errors.As(err, &uerr) {
			t.Fatalf("Check = %v, want an unknown authority error", err)
		}
		if n := len(r.AuditIDs()); n != 0 {
			t.Fatalf("%d events went to an untrusted receiver", n)
		}
	})
	t.Run("insecure_skip_verify connects anyway", func(t *testing.T) {
		r := startReceiver(t, fluentdtest.Config{TLS: serverTLS})
		o := newOutput(t, Options{Address: "tls://" + r.Addr(), TLS: TLSOptions{InsecureSkipVerify: true}})
		if err := send(t, o, genBatch(73, 5, auditgen.Metadata)); err != nil {
			t.Fatalf("Send: %v", err)
		}
	})
	t.Run("a client certificate is presented for mutual TLS", func(t *testing.T) {
		mtls := &tls.Config{Certificates: []tls.Certificate{server.cert}, ClientCAs: client.pool, ClientAuth: tls.RequireAndVerifyClientCert}
		r := startReceiver(t, fluentdtest.Config{TLS: mtls})
		o := newOutput(t, Options{Address: "tls://" + r.Addr(), TLS: TLSOptions{CAFile: server.caFile, CertFile: client.certFile, KeyFile: client.keyFile}})
		for i := range 2 {
			if err := send(t, o, genBatch(uint64(74+i), 5, auditgen.Metadata)); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
		}
		if n := len(r.AuditIDs()); n != 10 {
			t.Fatalf("received %d events, want 10", n)
		}
		if err := o.Check(context.Background()); err != nil {
			t.Fatalf("Check: %v", err)
		}
		o = newOutput(t, Options{Address: "tls://" + r.Addr(), TLS: TLSOptions{CAFile: server.caFile}})
		if err := o.Check(context.Background()); err == nil {
			t.Fatal("Check without a client certificate succeeded against a receiver that requires one")
		}
	})
}

func TestConformance(t *testing.T) {
	r := startReceiver(t, fluentdtest.Config{})
	outputstest.Run(t, outputstest.Harness{
		New: func(t *testing.T) outputs.Output {
			o, err := New(Options{Address: r.Addr(), AckTimeout: 500 * time.Millisecond}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return o
		},
		Received:      r.AuditIDs,
		FailTransient: func(n int) { r.WithholdAcks(n, false) },
		Reset:         r.Reset,
	})
}

func TestSendAfterClose(t *testing.T) {
	r := startReceiver(t, fluentdtest.Config{})
	o := newOutput(t, Options{Address: r.Addr()})
	o.Close(context.Background())
	if err := send(t, o, genBatch(80, 1, auditgen.Metadata)); !errors.Is(err, outputs.ErrClosed) {
		t.Fatalf("Send after Close = %v, want ErrClosed", err)
	}
}

func TestCheck(t *testing.T) {
	r := startReceiver(t, fluentdtest.Config{})
	o := newOutput(t, Options{Address: r.Addr()})
	if err := o.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	r.Close()
	if err := o.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "cannot connect to fluentd at "+r.Addr()) {
		t.Fatalf("Check of a stopped receiver = %v", err)
	}
}

func TestEncodeDoesNotAllocate(t *testing.T) {
	for _, gz := range []bool{false, true} {
		e := newEncoder("kube.audit", gz)
		b := genBatch(90, 200, auditgen.Metadata)
		var chunk [24]byte
		newChunk(&chunk)
		now := time.Now()
		e.encode(b, chunk[:], now)
		if n := testing.AllocsPerRun(20, func() { e.encode(b, chunk[:], now) }); n != 0 {
			t.Errorf("gzip=%v: encoding a batch allocates %v times, want 0", gz, n)
		}
	}
}

func TestARecordOverMaxRecordBytesIsCutOrRejected(t *testing.T) {
	r := startReceiver(t, fluentdtest.Config{})
	o := newOutput(t, Options{Address: r.Addr(), MaxRecordBytes: 64 << 10})
	big := strings.Repeat("x", 100<<10)
	b := &outputs.Batch{}
	b.Append([]byte(`{"kind":"Event","auditID":"small","stageTimestamp":"2026-11-23T10:54:44.671393Z"}`))
	b.Append([]byte(`{"kind":"Event","auditID":"cut","requestObject":{"data":"` + big + `"},"stageTimestamp":"2026-11-23T10:54:44.671393Z"}`))
	b.Append([]byte(`not json ` + big))
	b.Parse(nil)
	err := send(t, o, b)
	var rej *outputs.RejectedError
	if !errors.As(err, &rej) || !slices.Equal(rej.Lines, []int{2}) {
		t.Fatalf("Send = %v, want line 2 rejected", err)
	}
	got := r.Entries()
	if len(got) != 2 || got[0].Record["auditID"] != "small" || got[1].Record["auditID"] != "cut" {
		t.Fatalf("received %d entries, want small and cut", len(got))
	}
	if _, ok := got[1].Record["requestObject"]; ok {
		t.Fatal("the cut event kept its requestObject")
	}
	ann, _ := got[1].Record["annotations"].(map[string]any)
	if ann[outputs.TruncatedAnnotation] != "requestObject" || o.Truncated() != 1 {
		t.Fatalf("annotation %v, Truncated() %d", ann, o.Truncated())
	}
	if m := r.Messages(); len(m) != 1 || m[0].Size != 2 {
		t.Fatalf("messages %+v, want one with size 2", m)
	}
}

func TestTruncatedAnswersWhileASendWaitsForAnAckThatNeverComes(t *testing.T) {
	r := startReceiver(t, fluentdtest.Config{})
	o := newOutput(t, Options{Address: r.Addr(), MaxRecordBytes: 64 << 10, AckTimeout: time.Hour})
	b := &outputs.Batch{}
	b.Append([]byte(`{"kind":"Event","auditID":"cut","requestObject":{"data":"` + strings.Repeat("x", 100<<10) + `"}}`))
	b.Parse(nil)
	if err := send(t, o, b); err != nil {
		t.Fatal(err)
	}
	r.WithholdAcks(1, true) // the receiver keeps the next batch and never answers
	ctx, cancel := context.WithCancel(context.Background())
	sent := make(chan error, 1)
	go func() { sent <- o.Send(ctx, genBatch(81, 5, auditgen.Metadata)) }()
	defer func() {
		cancel()
		<-sent
	}()
	for len(r.Messages()) < 2 { // the Send is now waiting for its ack
		select {
		case err := <-sent:
			t.Fatalf("Send returned %v before its ack", err)
		case <-time.After(time.Millisecond):
		}
	}
	got := make(chan int64, 1)
	go func() { got <- o.Truncated() }()
	select {
	case n := <-got:
		if n != 1 {
			t.Fatalf("Truncated() = %d, want 1", n)
		}
	case <-time.After(10 * time.Second):
		// A metrics scrape must not wait for ack_timeout (here an hour).
		t.Fatal("Truncated() blocked while a Send waited for its ack")
	}
}

func TestAnIdleConnectionIsReusedAfterAckTimeoutHasPassed(t *testing.T) {
	// The ack wait leaves a read deadline on the connection; once it has
	// passed, the liveness probe must not take it for a closed connection.
	r := startReceiver(t, fluentdtest.Config{})
	o := newOutput(t, Options{Address: r.Addr(), AckTimeout: 50 * time.Millisecond})
	if err := send(t, o, genBatch(82, 5, auditgen.Metadata)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // idle for longer than ack_timeout
	if err := send(t, o, genBatch(83, 5, auditgen.Metadata)); err != nil {
		t.Fatal(err)
	}
	if n := r.Connections(); n != 1 {
		t.Fatalf("%d connections, want the first one reused", n)
	}
}

func TestAConnectionWithAnUnaskedAnswerPendingIsNotReused(t *testing.T) {
	// Bytes the receiver sent between two batches (a late or repeated
	// ack) would be read as the next batch's answer: the next Send must
	// start on a new connection instead of failing on a mismatched ack.
	r := startReceiver(t, fluentdtest.Config{})
	o := newOutput(t, Options{Address: r.Addr()})
	if err := send(t, o, genBatch(84, 5, auditgen.Metadata)); err != nil {
		t.Fatal(err)
	}
	o.mu.Lock()
	o.conn.br = bufio.NewReader(io.MultiReader(strings.NewReader("\x81\xa3ack\xa1x"), o.conn.nc))
	o.conn.br.Peek(1) // buffered above the socket: invisible to a peek at it
	o.mu.Unlock()
	if err := send(t, o, genBatch(85, 5, auditgen.Metadata)); err != nil {
		t.Fatalf("Send after an unasked answer: %v", err)
	}
	if n := r.Connections(); n != 2 {
		t.Fatalf("%d connections, want a new one for the second batch", n)
	}
}

// TestThousandsOfSmallBatchesOverTLSNeverWaitForAnAckAndNeverRepeatAChunk
// is the regression test of issue 9, item 4: over TLS, one batch per run
// waited the whole ack_timeout and was sent again. Every batch here must be
// acknowledged well before ack_timeout, arrive once, with a chunk id seen
// once, on as many connections as the receiver allows.
func TestThousandsOfSmallBatchesOverTLSNeverWaitForAnAckAndNeverRepeatAChunk(t *testing.T) {
	server := newPKI(t, "server")
	const ackTimeout = 20 * time.Second
	for _, c := range []struct {
		name      string
		version   uint16
		batches   int
		sharedKey string
		oneShot   bool // the receiver closes each connection after one message
	}{
		{"TLS 1.3, one connection", tls.VersionTLS13, 3000, "", false},
		{"TLS 1.2, one connection", tls.VersionTLS12, 3000, "", false},
		{"TLS 1.3, a new connection per batch", tls.VersionTLS13, 300, "k", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			serverTLS := &tls.Config{Certificates: []tls.Certificate{server.cert}, MinVersion: c.version, MaxVersion: c.version}
			r := startReceiver(t, fluentdtest.Config{TLS: serverTLS, SharedKey: c.sharedKey, DenyKeepalive: c.oneShot})
			opts := Options{Address: "tls://" + r.Addr(), TLS: TLSOptions{CAFile: server.caFile}, AckTimeout: ackTimeout}
			if c.sharedKey != "" {
				opts.SharedKeyFile = writeFile(t, "k", c.sharedKey)
			}
			o := newOutput(t, opts)
			ctx, cancel := context.WithCancel(context.Background()) // cancellable, as the agent's
			defer cancel()
			var want []string
			var slowest time.Duration
			for i := range c.batches {
				b := genBatch(uint64(1000+i), 2, auditgen.Metadata)
				start := time.Now()
				if err := o.Send(ctx, b); err != nil {
					t.Fatalf("Send %d: %v", i, err)
				}
				if d := time.Since(start); d > slowest {
					slowest = d
				}
				if slowest >= ackTimeout/2 {
					t.Fatalf("Send %d took %s, near ack_timeout (%s): its ack was missed", i, slowest, ackTimeout)
				}
				want = append(want, ids(b)...)
			}
			t.Logf("%d batches, slowest Send %s", c.batches, slowest)
			chunks := map[string]int{}
			for _, m := range r.Messages() {
				chunks[m.Chunk]++
			}
			if len(chunks) != c.batches {
				t.Errorf("%d distinct chunk ids for %d batches", len(chunks), c.batches)
			}
			for id, n := range chunks {
				if n != 1 {
					t.Errorf("chunk %s received %d times", id, n)
				}
			}
			if got := r.AuditIDs(); !slices.Equal(got, want) {
				t.Errorf("received %d events, want the %d sent, once each and in order", len(got), len(want))
			}
			wantConns := 1
			if c.oneShot {
				wantConns = c.batches
			}
			if n := r.Connections(); n != wantConns {
				t.Errorf("%d connections, want %d", n, wantConns)
			}
		})
	}
}
