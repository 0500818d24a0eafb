package fluentd

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/audittail/audittail/outputs"
)

func TestOptionsErrorsNameTheKey(t *testing.T) {
	key := writeFile(t, "key", "k")
	empty := writeFile(t, "empty", "\n")
	pki := newPKI(t, "opts")
	notPEM := writeFile(t, "ca.pem", "not a certificate")
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"address is required", Options{}, "address: required"},
		{"an unknown scheme is refused", Options{Address: "http://x:1"}, `address: "http://x:1": unknown scheme "http"`},
		{"a unix address needs a path", Options{Address: "unix://"}, "address: "},
		{"a bad port is refused", Options{Address: "host:1:2/x"}, "address: "},
		{"compress is none or gzip", Options{Address: "h:1", Compress: "zstd"}, `compress: unknown value "zstd"`},
		{"a negative ack_timeout is refused", Options{Address: "h:1", AckTimeout: -time.Second}, "ack_timeout: must not be negative"},
		{"a negative dial_timeout is refused", Options{Address: "h:1", DialTimeout: -time.Second}, "dial_timeout: must not be negative"},
		{"a negative write_timeout is refused", Options{Address: "h:1", WriteTimeout: -1}, "write_timeout: must not be negative"},
		{"a missing shared_key_file is named", Options{Address: "h:1", SharedKeyFile: "/nonexistent/key"}, "shared_key_file: open /nonexistent/key"},
		{"an empty shared_key_file is refused", Options{Address: "h:1", SharedKeyFile: empty}, "shared_key_file: " + empty + " is empty"},
		{"an unset shared_key_env is refused", Options{Address: "h:1", SharedKeyEnv: "AUDITTAIL_TEST_UNSET_VARIABLE"}, "shared_key_env: environment variable AUDITTAIL_TEST_UNSET_VARIABLE is not set"},
		{"shared_key_file and shared_key_env exclude each other", Options{Address: "h:1", SharedKeyFile: key, SharedKeyEnv: "X"}, "shared_key_file and shared_key_env: set only one"},
		{"a username needs a shared_key", Options{Address: "h:1", Username: "u"}, "username: "},
		{"a password needs a username", Options{Address: "h:1", SharedKeyFile: key, PasswordFile: key}, "username: required"},
		{"tls keys need a tls address", Options{Address: "tcp://h:1", TLS: TLSOptions{CAFile: pki.caFile}}, `tls: set, but address "tcp://h:1" is not tls://`},
		{"a missing ca_file is named", Options{Address: "tls://h:1", TLS: TLSOptions{CAFile: "/nonexistent/ca.pem"}}, "tls.ca_file: open /nonexistent/ca.pem"},
		{"a ca_file without PEM is refused", Options{Address: "tls://h:1", TLS: TLSOptions{CAFile: notPEM}}, "tls.ca_file: no PEM certificate in"},
		{"cert_file needs key_file", Options{Address: "tls://h:1", TLS: TLSOptions{CertFile: pki.certFile}}, "tls.key_file: required"},
		{"key_file needs cert_file", Options{Address: "tls://h:1", TLS: TLSOptions{KeyFile: pki.keyFile}}, "tls.cert_file: required"},
		{"a key that does not match is refused", Options{Address: "tls://h:1", TLS: TLSOptions{CertFile: pki.certFile, KeyFile: pki.caFile}}, "tls.cert_file and tls.key_file: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.o, nil)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error starting %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") || strings.HasSuffix(err.Error(), ".") {
				t.Errorf("error %q is not one lower-case line without a trailing period", err)
			}
		})
	}
}

func TestAddressForms(t *testing.T) {
	for _, tc := range []struct{ in, network, addr string }{
		{"127.0.0.1:24224", "tcp", "127.0.0.1:24224"},
		{"tcp://fluentd.logging:24225", "tcp", "fluentd.logging:24225"},
		{"tls://fluentd.logging:24284", "tcp", "fluentd.logging:24284"},
		{"fluentd.logging", "tcp", "fluentd.logging:24224"},
		{"[::1]:5170", "tcp", "[::1]:5170"},
		{"::1", "tcp", "[::1]:24224"},
		{"unix:///var/run/fluent/fluent.sock", "unix", "/var/run/fluent/fluent.sock"},
	} {
		var s settings
		if err := parseAddress(tc.in, &s); err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if s.network != tc.network || s.addr != tc.addr || s.useTLS != strings.HasPrefix(tc.in, "tls://") {
			t.Errorf("%s: %s %s tls=%v, want %s %s", tc.in, s.network, s.addr, s.useTLS, tc.network, tc.addr)
		}
	}
}

func TestDefaults(t *testing.T) {
	o, err := New(Options{Address: "127.0.0.1:24224"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := o.s
	if s.tag != DefaultTag || s.ackTimeout != DefaultAckTimeout || s.dialTimeout != DefaultDialTimeout ||
		s.writeTimeout != DefaultWriteTimeout || s.keepalive != DefaultKeepalive || s.gzip || s.sharedKey != nil {
		t.Fatalf("defaults: %+v", s)
	}
}

func decodeConfig(t *testing.T, doc string) (*Output, error) {
	t.Helper()
	var c outputs.Config
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	return FromConfig(c, nil)
}

func TestFromConfig(t *testing.T) {
	pki := newPKI(t, "yaml")
	key := writeFile(t, "key", "k\n")
	o, err := decodeConfig(t, `
name: fluent
type: fluentd
address: tls://127.0.0.1:24284
tag: kube.audit
compress: gzip
ack_timeout: 20s
keepalive: -1s
shared_key_file: `+key+`
self_hostname: node-1
tls:
  ca_file: `+pki.caFile+`
  server_name: fluentd.test
`)
	if err != nil {
		t.Fatalf("FromConfig: %v", err)
	}
	s := o.s
	if !s.useTLS || !s.gzip || s.ackTimeout != 20*time.Second || s.keepalive >= 0 || string(s.sharedKey) != "k" || s.tls.ServerName != "fluentd.test" || s.tls.RootCAs == nil {
		t.Fatalf("decoded settings %+v", s)
	}

	if _, err := decodeConfig(t, "type: fluentd\naddress: h:1\nack_timout: 1s\n"); err == nil || !strings.Contains(err.Error(), `unknown key "ack_timout"`) {
		t.Fatalf("a misspelt key: %v", err)
	}
	if _, err := decodeConfig(t, "type: fluentd\naddress: tls://h:1\ntls:\n  ca_fil: x\n"); err == nil || !strings.Contains(err.Error(), `line 4: unknown key "tls.ca_fil"`) {
		t.Fatalf("a misspelt tls key: %v", err)
	}
	if _, err := decodeConfig(t, "type: fluentd\naddress: h:1\nshared_key: literal\n"); err == nil || !strings.Contains(err.Error(), `unknown key "shared_key"`) {
		t.Fatalf("a literal shared_key must be refused: %v", err)
	}
}

func TestParseTimestamp(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want time.Time
		ok   bool
	}{
		{"2026-11-23T10:54:44.671393Z", time.Date(2026, 11, 23, 10, 54, 44, 671393000, time.UTC), true},
		{"2026-11-23T10:54:44Z", time.Date(2026, 11, 23, 10, 54, 44, 0, time.UTC), true},
		{"2026-11-23T10:54:44.1Z", time.Date(2026, 11, 23, 10, 54, 44, 100000000, time.UTC), true},
		{"2026-11-23T10:54:44.123456789Z", time.Date(2026, 11, 23, 10, 54, 44, 123456789, time.UTC), true},
		{"2026-11-23T11:54:44.5+01:00", time.Date(2026, 11, 23, 10, 54, 44, 500000000, time.UTC), true},
		{`2026-11-23T10:54:44\u002e5Z`, time.Date(2026, 11, 23, 10, 54, 44, 500000000, time.UTC), true},
		{"1970-01-01T00:00:00Z", time.Unix(0, 0), true},
		{"1969-12-31T23:59:59Z", time.Time{}, false},
		{"2200-01-01T00:00:00Z", time.Time{}, false},
		{"2026-02-30T10:54:44Z", time.Time{}, false},
		{"2026-11-23T10:54:44.Z", time.Time{}, false},
		{"2026-11-23T10:54:44.1234567891Z", time.Date(2026, 11, 23, 10, 54, 44, 123456789, time.UTC), true},
		{"2026-11-23 10:54:44Z", time.Time{}, false},
		{"yesterday", time.Time{}, false},
		{"", time.Time{}, false},
	} {
		s, ns, ok := parseTimestamp([]byte(tc.raw))
		if ok != tc.ok || (ok && !time.Unix(int64(s), int64(ns)).Equal(tc.want)) {
			t.Errorf("parseTimestamp(%q) = %v, %v, %v; want %v, %v", tc.raw, s, ns, ok, tc.want, tc.ok)
		}
	}
}
