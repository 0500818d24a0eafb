package kafka

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"

	"github.com/audittail/audittail/outputs"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOptionsErrorsNameTheKey(t *testing.T) {
	pw := writeFile(t, "pw", "secret\n")
	empty := writeFile(t, "empty", "\n")
	notPEM := writeFile(t, "ca.pem", "not a certificate")
	ok := Options{Brokers: []string{"k:9092"}, Topic: "audit"}
	with := func(f func(o *Options)) Options {
		o := ok
		f(&o)
		return o
	}
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"brokers are required", Options{Topic: "audit"}, "brokers: required"},
		{"a broker is host:port, not a URL", with(func(o *Options) { o.Brokers = []string{"k:9092", "kafka://k:9092"} }), `brokers[1]: "kafka://k:9092" is not host:port`},
		{"an empty broker is refused", with(func(o *Options) { o.Brokers = []string{""} }), `brokers[0]: "" is not host:port`},
		{"a broker needs a host", with(func(o *Options) { o.Brokers = []string{":9092"} }), `brokers[0]: ":9092": missing host`},
		{"topic is required", Options{Brokers: []string{"k"}}, "topic: required"},
		{"a topic name follows Kafka's rule", with(func(o *Options) { o.Topic = "audit/events" }), `topic: "audit/events": character '/' not allowed`},
		{"key is one of four", with(func(o *Options) { o.Key = "verb" }), `key: unknown value "verb" (want auditID, namespace, user or none)`},
		{"acks is all or leader", with(func(o *Options) { o.Acks = "1" }), `acks: unknown value "1" (want all or leader)`},
		{"compression is one of five", with(func(o *Options) { o.Compression = "brotli" }), `compression: unknown value "brotli" (want zstd, lz4, snappy, gzip or none)`},
		{"a negative max_message_bytes is refused", with(func(o *Options) { o.MaxMessageBytes = -1 }), "max_message_bytes: must not be negative"},
		{"a tiny max_message_bytes is refused", with(func(o *Options) { o.MaxMessageBytes = 100 }), "max_message_bytes: 100 is too small"},
		{"a huge max_message_bytes is refused", with(func(o *Options) { o.MaxMessageBytes = 2 << 30 }), "max_message_bytes: 2147483648 is too large"},
		{"a negative timeout is refused", with(func(o *Options) { o.Timeout = -time.Second }), "timeout: must not be negative"},
		{"sasl needs a mechanism", with(func(o *Options) { o.SASL = SASLOptions{Username: "u", PasswordFile: pw} }), "sasl.mechanism: required"},
		{"sasl needs a username", with(func(o *Options) { o.SASL = SASLOptions{Mechanism: "plain", PasswordFile: pw} }), "sasl.username: required"},
		{"sasl needs a password_file", with(func(o *Options) { o.SASL = SASLOptions{Mechanism: "plain", Username: "u"} }), "sasl.password_file: required"},
		{"an unknown mechanism is refused", with(func(o *Options) { o.SASL = SASLOptions{Mechanism: "gssapi", Username: "u", PasswordFile: pw} }), `sasl.mechanism: unknown value "gssapi"`},
		{"a missing password_file is named", with(func(o *Options) {
			o.SASL = SASLOptions{Mechanism: "plain", Username: "u", PasswordFile: "/nonexistent/pw"}
		}), "sasl.password_file: open /nonexistent/pw"},
		{"an empty password_file is refused", with(func(o *Options) { o.SASL = SASLOptions{Mechanism: "plain", Username: "u", PasswordFile: empty} }), "sasl.password_file: " + empty + " is empty"},
		{"a missing ca_file is named", with(func(o *Options) { o.TLS = &TLSOptions{CAFile: "/nonexistent/ca.pem"} }), "tls.ca_file: open /nonexistent/ca.pem"},
		{"a ca_file without PEM is refused", with(func(o *Options) { o.TLS = &TLSOptions{CAFile: notPEM} }), "tls.ca_file: no PEM certificate in"},
		{"cert_file needs key_file", with(func(o *Options) { o.TLS = &TLSOptions{CertFile: notPEM} }), "tls.key_file: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.o, nil)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error starting %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") || strings.HasSuffix(err.Error(), ".") {
				t.Errorf("error %q is not one line without a trailing period", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	s, err := Options{Brokers: []string{"kafka-0", "kafka-1:9093", "[::1]"}, Topic: "audit"}.validate()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"kafka-0:9092", "kafka-1:9093", "[::1]:9092"}; !slices.Equal(s.brokers, want) {
		t.Errorf("brokers = %v, want %v", s.brokers, want)
	}
	if s.key != keyAuditID || !s.acksAll || s.maxMsg != DefaultMaxMessageBytes || s.timeout != DefaultTimeout || s.tls != nil || s.sasl != nil {
		t.Errorf("defaults = %+v", s)
	}
	if s.codec != kgo.ZstdCompression().WithLevel(int(zstd.SpeedFastest)) {
		t.Errorf("default compression %v, want zstd at its fastest level", s.codec)
	}
}

func TestEveryMechanismAndCodecIsAccepted(t *testing.T) {
	pw := writeFile(t, "pw", "secret")
	for _, m := range []string{"plain", "scram-sha-256", "scram-sha-512"} {
		s, err := Options{Brokers: []string{"k"}, Topic: "t", SASL: SASLOptions{Mechanism: m, Username: "u", PasswordFile: pw}}.validate()
		if err != nil || s.sasl == nil {
			t.Errorf("mechanism %s: %v", m, err)
		}
	}
	for _, c := range []string{"zstd", "lz4", "snappy", "gzip", "none"} {
		if _, err := (Options{Brokers: []string{"k"}, Topic: "t", Compression: c}).validate(); err != nil {
			t.Errorf("compression %s: %v", c, err)
		}
	}
	for _, k := range []string{"auditID", "namespace", "user", "none"} {
		if _, err := (Options{Brokers: []string{"k"}, Topic: "t", Key: k}).validate(); err != nil {
			t.Errorf("key %s: %v", k, err)
		}
	}
}

func decode(t *testing.T, doc string) (outputs.Config, error) {
	t.Helper()
	var c outputs.Config
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	_, err := FromConfig(c, nil)
	return c, err
}

func TestUnknownKeysAreErrorsNamingTheKey(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"type: kafka\nbrokers: [k]\ntopic: t\npartition: 3\n", `unknown key "partition"`},
		{"type: kafka\nbrokers: [k]\ntopic: t\nsasl: {mechanism: plain, password: x}\n", `unknown key "sasl.password" (known keys under sasl: mechanism, password_file, username)`},
		{"type: kafka\nbrokers: [k]\ntopic: t\ntls: {ca_fle: x}\n", `unknown key "tls.ca_fle"`},
	} {
		_, err := decode(t, tc.doc)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.doc, err, tc.want)
		}
	}
}

func TestTheIssuesExampleDecodes(t *testing.T) {
	pw := writeFile(t, "pw", "secret")
	_, err := decode(t, `
name: k
type: kafka
brokers: ["kafka-0:9092", "kafka-1:9092"]
topic: audit
key: auditID
acks: all
compression: zstd
sasl: {mechanism: scram-sha-512, username: audittail, password_file: `+pw+`}
max_message_bytes: 1MiB
timeout: 10s
`)
	if err != nil {
		t.Fatal(err)
	}
}

func TestKeys(t *testing.T) {
	want := []string{"acks", "brokers", "compression", "key", "max_message_bytes", "sasl.mechanism", "sasl.password_file", "sasl.username", "timeout",
		"tls.ca_file", "tls.cert_file", "tls.insecure_skip_verify", "tls.key_file", "tls.server_name", "topic"}
	if got := outputs.Keys(Options{}); !slices.Equal(got, want) {
		t.Errorf("Keys = %v, want %v", got, want)
	}
}

// An event too long even without its objects is dead-lettered without
// asking the cluster anything.
func TestAnEventTooLongWithoutObjectsIsRejected(t *testing.T) {
	o, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Topic: "t", MaxMessageBytes: 4096, Timeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	b := &outputs.Batch{}
	b.Append([]byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","verb":"get","requestURI":"/` + strings.Repeat("x", 5000) + `"}`))
	b.Parse(nil)
	err = o.Send(context.Background(), b)
	var rej *outputs.RejectedError
	if !errors.As(err, &rej) || !slices.Equal(rej.Lines, []int{0}) {
		t.Fatalf("Send = %v, want a RejectedError for line 0", err)
	}
	if !strings.Contains(err.Error(), "max_message_bytes (4096)") || !strings.Contains(err.Error(), "topic t") {
		t.Errorf("error %q does not name the limit and the topic", err)
	}
}

// A dead cluster makes Send return within its timeout, with an error that
// is retried (not permanent), names the brokers and the topic, and never
// carries the password.
func TestADeadClusterDoesNotHangSend(t *testing.T) {
	pw := writeFile(t, "pw", "hunter2-very-secret\n")
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Topic: "audit", Timeout: 500 * time.Millisecond,
		SASL: SASLOptions{Mechanism: "plain", Username: "audittail", PasswordFile: pw}}, log)
	if err != nil {
		t.Fatal(err)
	}
	b := &outputs.Batch{}
	b.Append([]byte(`{"kind":"Event","auditID":"a1","stage":"ResponseComplete","verb":"get"}`))
	b.Parse(nil)
	start := time.Now()
	err = o.Send(context.Background(), b)
	if err == nil || outputs.IsPermanent(err) {
		t.Fatalf("Send = %v, want a retryable error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Send took %s with a 500ms timeout", d)
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "topic audit") {
		t.Errorf("error %q does not name the broker and the topic", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := o.Check(ctx); err == nil {
		t.Error("Check against a dead cluster succeeded")
	}
	if err := o.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := o.Send(context.Background(), b); !errors.Is(err, outputs.ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
	if strings.Contains(logs.String()+err.Error(), "hunter2") {
		t.Error("the password was logged or put in an error")
	}
}

func TestAnEmptyTLSMappingTurnsTLSOn(t *testing.T) {
	c, err := decode(t, "type: kafka\nbrokers: [k]\ntopic: t\ntls: {}\n")
	if err != nil {
		t.Fatal(err)
	}
	var o Options
	if err := c.DecodeOptions(&o); err != nil {
		t.Fatal(err)
	}
	s, err := o.validate()
	if err != nil || s.tls == nil {
		t.Fatalf("tls: {} gave %v, %v; want TLS on", s, err)
	}
	if s.tls.InsecureSkipVerify || s.tls.ServerName != "" {
		t.Errorf("tls config %+v: want verification on, each broker's own name", s.tls)
	}
}
