package syslog

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	gosyslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/rfc3164"
	"github.com/leodido/go-syslog/v4/rfc5424"
	"gopkg.in/yaml.v3"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/outputstest"
	"github.com/audittail/audittail/parser"
)

const testHost = "cp-test"

// newOutput makes an output for r with the test defaults and mod applied.
func newOutput(t testing.TB, r *receiver, mod func(*Options)) *Output {
	t.Helper()
	o := Options{Address: r.url(), Hostname: testHost}
	if r.lf {
		o.Framing = FramingNonTransparent
	}
	if r.rfc3164 {
		o.Format = FormatRFC3164
	}
	if r.scheme == "tls" {
		o.TLS.CAFile = testPKIFor(t, r).caFile
	}
	if mod != nil {
		mod(&o)
	}
	out, err := New(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	out.dialed = r.dialed
	t.Cleanup(func() { out.Close(context.Background()) })
	return out
}

// pkis remembers the PKI of each TLS receiver.
var pkis = map[*receiver]*pki{}

func newTLSReceiver(t testing.TB, mod func(*receiver)) *receiver {
	p := testPKI(t)
	r := newReceiver(t, "tls", func(r *receiver) {
		r.tls = p.serverConfig()
		r.tls.ClientCAs = p.ca
		if mod != nil {
			mod(r)
		}
	})
	pkis[r] = p
	t.Cleanup(func() { delete(pkis, r) })
	return r
}

func testPKIFor(t testing.TB, r *receiver) *pki {
	p, ok := pkis[r]
	if !ok {
		t.Fatal("TLS receiver made without newTLSReceiver")
	}
	return p
}

func send(t testing.TB, o *Output, b *outputs.Batch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := o.Send(ctx, b); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

// fields are an event's fields decoded with encoding/json, independently of
// the parser.
type fields struct {
	AuditID   string                     `json:"auditID"`
	Stage     string                     `json:"stage"`
	Verb      string                     `json:"verb"`
	User      struct{ Username *string } `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
	} `json:"objectRef"`
	ResponseStatus *struct{ Code int } `json:"responseStatus"`
	StageTimestamp time.Time           `json:"stageTimestamp"`
}

func decodeFields(t testing.TB, line []byte) fields {
	t.Helper()
	var f fields
	if err := json.Unmarshal(line, &f); err != nil {
		t.Fatalf("test event is not JSON: %v", err)
	}
	return f
}

// wantSD is the structured data the sink must send for line.
func wantSD(t testing.TB, line []byte) map[string]string {
	f := decodeFields(t, line)
	sd := map[string]string{"auditID": f.AuditID, "stage": f.Stage, "verb": f.Verb}
	if f.User.Username != nil {
		sd["user"] = *f.User.Username
	}
	if f.ObjectRef != nil {
		sd["resource"] = f.ObjectRef.Resource
		if f.ObjectRef.Subresource != "" {
			sd["resource"] += "/" + f.ObjectRef.Subresource
		}
		if f.ObjectRef.Namespace != "" {
			sd["namespace"] = f.ObjectRef.Namespace
		}
	}
	if f.ResponseStatus != nil && f.ResponseStatus.Code != 0 {
		sd["code"] = strconv.Itoa(f.ResponseStatus.Code)
	}
	return sd
}

func wantSeverity(t testing.TB, line []byte) uint8 {
	f := decodeFields(t, line)
	switch {
	case f.ResponseStatus == nil:
		return 6
	case f.ResponseStatus.Code >= 500:
		return 3
	case f.ResponseStatus.Code >= 400:
		return 4
	}
	return 6
}

// check5424 checks every field of a received RFC 5424 message.
func check5424(t testing.TB, m gosyslog.Message, line []byte) {
	t.Helper()
	sm, ok := m.(*rfc5424.SyslogMessage)
	if !ok {
		t.Fatalf("received a %T, want an RFC 5424 message", m)
	}
	f := decodeFields(t, line)
	switch {
	case sm.Facility == nil || *sm.Facility != 10:
		t.Errorf("%s: facility %v, want 10 (authpriv)", f.AuditID, sm.Facility)
	case *sm.Severity != wantSeverity(t, line):
		t.Errorf("%s: severity %d, want %d", f.AuditID, *sm.Severity, wantSeverity(t, line))
	case sm.Version != 1:
		t.Errorf("%s: version %d", f.AuditID, sm.Version)
	case sm.Hostname == nil || *sm.Hostname != testHost:
		t.Errorf("%s: hostname %v", f.AuditID, sm.Hostname)
	case sm.Appname == nil || *sm.Appname != "kube-apiserver":
		t.Errorf("%s: app-name %v", f.AuditID, sm.Appname)
	case sm.ProcID != nil:
		t.Errorf("%s: procid %q, want -", f.AuditID, *sm.ProcID)
	case sm.MsgID == nil || *sm.MsgID != "audit":
		t.Errorf("%s: msgid %v", f.AuditID, sm.MsgID)
	case sm.Timestamp == nil || !sm.Timestamp.Equal(f.StageTimestamp):
		t.Errorf("%s: timestamp %v, want %v", f.AuditID, sm.Timestamp, f.StageTimestamp)
	case sm.StructuredData == nil:
		t.Errorf("%s: no structured data", f.AuditID)
	case !reflect.DeepEqual((*sm.StructuredData)[DefaultSDID], wantSD(t, line)):
		t.Errorf("%s: structured data %v, want %v", f.AuditID, *sm.StructuredData, wantSD(t, line))
	case sm.Message == nil || *sm.Message != "\uFEFF"+string(line):
		t.Errorf("%s: MSG is not BOM + the event line", f.AuditID)
	}
}

func TestMessagesParseWithGoSyslog(t *testing.T) {
	cases := []struct {
		name    string
		scheme  string
		lf      bool
		rfc3164 bool
	}{
		{"tcp with octet counting", "tcp", false, false},
		{"tcp with non-transparent framing", "tcp", true, false},
		{"tls", "tls", false, false},
		{"udp", "udp", false, false},
		{"rfc3164 over tcp", "tcp", false, true},
		{"rfc3164 over tcp with non-transparent framing", "tcp", true, true},
		{"rfc3164 over udp", "udp", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mod := func(r *receiver) { r.lf, r.rfc3164 = c.lf, c.rfc3164 }
			var r *receiver
			if c.scheme == "tls" {
				r = newTLSReceiver(t, mod)
			} else {
				r = newReceiver(t, c.scheme, mod)
			}
			n := 300
			if c.scheme == "udp" {
				n = 40 // a loopback socket buffer holds them all
			}
			opts := func(o *Options) { o.MaxMessageBytes = 60000 } // nothing cut
			o := newOutput(t, r, opts)
			b, ids := outputstest.NewBatch(7, n)
			send(t, o, b)
			msgs := r.wait(n)
			if len(msgs) != n {
				t.Fatalf("received %d messages, want %d", len(msgs), n)
			}
			for i, m := range msgs {
				if c.rfc3164 {
					check3164(t, m, b.Line(i))
				} else {
					check5424(t, m, b.Line(i))
				}
			}
			if !c.rfc3164 {
				if got := r.auditIDs(); !reflect.DeepEqual(got, ids) {
					t.Fatal("auditIDs out of order")
				}
			}
		})
	}
}

func check3164(t testing.TB, m gosyslog.Message, line []byte) {
	t.Helper()
	sm, ok := m.(*rfc3164.SyslogMessage)
	if !ok {
		t.Fatalf("received a %T, want an RFC 3164 message", m)
	}
	f := decodeFields(t, line)
	want := f.StageTimestamp.Local()
	switch {
	case *sm.Facility != 10 || *sm.Severity != wantSeverity(t, line):
		t.Errorf("%s: facility %d severity %d", f.AuditID, *sm.Facility, *sm.Severity)
	case sm.Hostname == nil || *sm.Hostname != testHost:
		t.Errorf("%s: hostname %v", f.AuditID, sm.Hostname)
	case sm.Appname == nil || *sm.Appname != "kube-apiserver":
		t.Errorf("%s: tag %v", f.AuditID, sm.Appname)
	case sm.Timestamp == nil || sm.Timestamp.Month() != want.Month() || sm.Timestamp.Day() != want.Day() || sm.Timestamp.Hour() != want.Hour() || sm.Timestamp.Minute() != want.Minute() || sm.Timestamp.Second() != want.Second():
		t.Errorf("%s: timestamp %v, want %v", f.AuditID, sm.Timestamp, want)
	case sm.Message == nil || *sm.Message != string(line):
		t.Errorf("%s: MSG is not the event line:\n%v\n%s", f.AuditID, sm.Message, line)
	}
}

func batchOf(lines ...string) *outputs.Batch {
	b := &outputs.Batch{}
	for _, l := range lines {
		b.Append([]byte(l))
	}
	b.Parse(nil)
	return b
}

func TestStructuredDataEscapesQuoteBackslashAndBracket(t *testing.T) {
	line := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-1","stage":"ResponseComplete","requestURI":"/api","verb":"get",` +
		`"user":{"username":"eve \"the\" \\admin\\ [x]\u00e9"},"objectRef":{"resource":"pods","subresource":"exec","namespace":"a]b"},` +
		`"responseStatus":{"code":403},"stageTimestamp":"2026-11-23T10:54:44.671393Z"}`
	var enc encoder
	enc.sdID = DefaultSDID
	b := batchOf(line)
	got := string(enc.appendSD(nil, b.Event(0)))
	want := `[audit@32473 auditID="id-1" stage="ResponseComplete" verb="get" user="eve \"the\" \\admin\\ [x\]é" resource="pods/exec" namespace="a\]b" code="403"]`
	if got != want {
		t.Fatalf("structured data\n got %s\nwant %s", got, want)
	}

	r := newReceiver(t, "tcp", nil)
	o := newOutput(t, r, nil)
	send(t, o, b)
	msgs := r.wait(1)
	check5424(t, msgs[0], b.Line(0))
	if sev := *msgs[0].(*rfc5424.SyslogMessage).Severity; sev != 4 {
		t.Errorf("a 403 has severity %d, want 4 (warning)", sev)
	}
}

func TestMSGStartsWithBOMOnlyWhenItIsUTF8(t *testing.T) {
	r := newReceiver(t, "tcp", nil)
	o := newOutput(t, r, nil)
	// Lines the agent forwards although they are not events (on_parse_error:
	// forward): no structured data, time of sending.
	b := batchOf(`not json at all`, "{\"kind\":\"Event\",\"bad\":\"\xff\xfe\"")
	before := time.Now().Add(-time.Second)
	send(t, o, b)
	msgs := r.wait(2)
	for i, want := range []string{"\uFEFFnot json at all", "{\"kind\":\"Event\",\"bad\":\"\xff\xfe\""} {
		sm := msgs[i].(*rfc5424.SyslogMessage)
		if sm.Message == nil || *sm.Message != want {
			t.Errorf("message %d: MSG %q, want %q", i, *sm.Message, want)
		}
		if sm.StructuredData != nil {
			t.Errorf("message %d: structured data %v for a line that is not an event", i, *sm.StructuredData)
		}
		if sm.Timestamp == nil || sm.Timestamp.Before(before) {
			t.Errorf("message %d: timestamp %v, want the time of sending", i, sm.Timestamp)
		}
		if *sm.Severity != 6 {
			t.Errorf("message %d: severity %d, want 6", i, *sm.Severity)
		}
	}
}

func TestTimestamps(t *testing.T) {
	now := time.Date(2027, 1, 2, 3, 4, 5, 6000, time.UTC)
	cases := []struct{ raw, want string }{
		{"2026-11-23T10:54:44.671393Z", "2026-11-23T10:54:44.671393Z"},
		{"2026-11-23T10:54:44Z", "2026-11-23T10:54:44Z"},
		{"2026-11-23T10:54:44.5+02:00", "2026-11-23T10:54:44.5+02:00"},
		{"2026-11-23T10:54:44.123456789Z", "2026-11-23T10:54:44.123456Z"},
		{"2026-11-23T10:54:44.123456789-01:30", "2026-11-23T12:24:44.123456Z"},
		{"2026-02-29T10:54:44Z", "2027-01-02T03:04:05.000006Z"}, // no such day
		{"2028-02-29T10:54:44Z", "2028-02-29T10:54:44Z"},
		{"2026-11-23 10:54:44Z", "2027-01-02T03:04:05.000006Z"},
		{"", "2027-01-02T03:04:05.000006Z"},
		{"2026-13-23T10:54:44Z", "2027-01-02T03:04:05.000006Z"},
		{"2026-11-23T10:54:44.Z", "2027-01-02T03:04:05.000006Z"},
		{`2026-11-23T10:54:44\u002e5Z`, "2026-11-23T10:54:44.500000Z"}, // decoded, not copied
		{"2026-11-24T10:54:44+24:00", "2026-11-23T10:54:44.000000Z"},   // time.Parse takes it, RFC 5424 does not
	}
	p := rfc5424.NewParser()
	for _, c := range cases {
		var raw []byte
		if c.raw != "" {
			raw = []byte(c.raw)
		}
		got := string(appendTimestamp(nil, raw, now))
		if got != c.want {
			t.Errorf("appendTimestamp(%q) = %q, want %q", c.raw, got, c.want)
		}
		if _, err := p.Parse([]byte("<1>1 " + got + " h a - - -")); err != nil {
			t.Errorf("%q is not an RFC 5424 TIMESTAMP: %v", got, err)
		}
	}
}

func TestFacilityAndSeverity(t *testing.T) {
	for name, want := range map[string]int{"": 10, "authpriv": 10, "security": 4, "AUTH": 4, "local0": 16, "local7": 23, "audit": 13, "0": 0, "23": 23} {
		o, err := New(Options{Address: "tcp://127.0.0.1:514", Facility: name}, nil)
		if err != nil {
			t.Fatalf("facility %q: %v", name, err)
		}
		if o.cfg.facility != want {
			t.Errorf("facility %q = %d, want %d", name, o.cfg.facility, want)
		}
	}
	for code, want := range map[int]int{0: 6, 200: 6, 201: 6, 101: 6, 304: 6, 400: 4, 403: 4, 429: 4, 500: 3, 503: 3} {
		if got := severity(code); got != want {
			t.Errorf("severity(%d) = %d, want %d", code, got, want)
		}
	}
}

func TestOptionErrorsNameTheOption(t *testing.T) {
	p := testPKI(t)
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"no address", Options{}, "address: required"},
		{"no scheme", Options{Address: "127.0.0.1:514"}, "address: invalid"},
		{"unknown scheme", Options{Address: "http://127.0.0.1:514"}, `address: invalid scheme "http"`},
		{"no port", Options{Address: "tcp://127.0.0.1"}, "address: invalid"},
		{"a path", Options{Address: "tcp://127.0.0.1:514/x"}, "address: invalid"},
		{"bad port", Options{Address: "tcp://127.0.0.1:99999"}, "address: invalid port"},
		{"bad format", Options{Address: "tcp://h:1", Format: "json"}, `format: invalid value "json" (want rfc5424 or rfc3164)`},
		{"bad framing", Options{Address: "tcp://h:1", Framing: "x"}, `framing: invalid value "x" (want octet-counting or non-transparent)`},
		{"framing with udp", Options{Address: "udp://h:1", Framing: "octet-counting"}, "framing: not used with udp"},
		{"lf framing with tls", Options{Address: "tls://h:1", Framing: "non-transparent"}, "framing: non-transparent is not allowed with tls://"},
		{"bad facility", Options{Address: "tcp://h:1", Facility: "locl0"}, `facility: invalid value "locl0"`},
		{"facility out of range", Options{Address: "tcp://h:1", Facility: "24"}, "facility: 24 is out of range"},
		{"hostname with a space", Options{Address: "tcp://h:1", Hostname: "cp 1"}, `hostname: invalid value "cp 1"`},
		{"app_name too long", Options{Address: "tcp://h:1", AppName: strings.Repeat("a", 49)}, "app_name: invalid value"},
		{"app_name with a colon in rfc3164", Options{Address: "tcp://h:1", Format: "rfc3164", AppName: "a:b"}, "app_name: invalid value"},
		{"sd_id without a PEN", Options{Address: "tcp://h:1", SDID: "audit"}, `sd_id: invalid value "audit" (want name@<private enterprise number>`},
		{"sd_id with a quote", Options{Address: "tcp://h:1", SDID: `a"b@1`}, "sd_id: invalid value"},
		{"sd_id with rfc3164", Options{Address: "tcp://h:1", Format: "rfc3164", SDID: "a@1"}, "sd_id: not used with rfc3164"},
		{"tiny max_message_bytes", Options{Address: "tcp://h:1", MaxMessageBytes: 100}, "max_message_bytes: 100 is too small"},
		{"max_message_bytes over a datagram", Options{Address: "udp://h:1", MaxMessageBytes: 70000}, "max_message_bytes: 70000 does not fit in a UDP datagram"},
		{"negative timeout", Options{Address: "tcp://h:1", WriteTimeout: -1}, "dial_timeout and write_timeout: must not be negative"},
		{"ca_file without tls", Options{Address: "tcp://h:1", TLS: TLSOptions{CAFile: p.caFile}}, "tls: only used with tls://"},
		{"missing ca_file", Options{Address: "tls://h:1", TLS: TLSOptions{CAFile: "/nonexistent/ca.pem"}}, "tls.ca_file: open /nonexistent/ca.pem"},
		{"ca_file without a certificate", Options{Address: "tls://h:1", TLS: TLSOptions{CAFile: p.clientKeyFile}}, "tls.ca_file: no PEM certificate in"},
		{"cert_file without key_file", Options{Address: "tls://h:1", TLS: TLSOptions{CertFile: p.clientCertFile}}, "tls.key_file: required with tls.cert_file"},
		{"mismatched key", Options{Address: "tls://h:1", TLS: TLSOptions{CertFile: p.clientCertFile, KeyFile: p.keyFile}}, "tls.cert_file and tls.key_file:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.o, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestFromConfigDecodesTheKeysStrictly(t *testing.T) {
	t.Setenv("NODE_NAME", "cp-7")
	var cfgs []outputs.Config
	src := `
- name: siem
  type: syslog
  address: udp://127.0.0.1:514
  facility: 16
  max_message_bytes: 4KiB
  app_name: audit
- name: bad
  type: syslog
  address: tcp://127.0.0.1:514
  adress: x
`
	if err := yaml.Unmarshal([]byte(src), &cfgs); err != nil {
		t.Fatal(err)
	}
	o, err := FromConfig(cfgs[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.facility != 16 || o.cfg.maxMsg != 4096 || o.cfg.appName != "audit" || o.cfg.hostname != "cp-7" || o.cfg.network != "udp" {
		t.Fatalf("decoded %+v", o.cfg)
	}
	if _, err := FromConfig(cfgs[1], nil); err == nil || !strings.Contains(err.Error(), `unknown key "adress"`) {
		t.Fatalf("FromConfig with a misspelt key = %v", err)
	}
	o, err = New(Options{Address: "udp://127.0.0.1:514"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.maxMsg != DefaultMaxDatagramSize {
		t.Errorf("udp max_message_bytes default %d", o.cfg.maxMsg)
	}
	o, err = New(Options{Address: "tls://127.0.0.1:514"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.maxMsg != DefaultMaxStreamBytes || o.cfg.tls.ServerName != "127.0.0.1" || o.cfg.tls.InsecureSkipVerify {
		t.Errorf("tls defaults %+v", o.cfg)
	}
}

func TestNewDoesNotConnect(t *testing.T) {
	// Nothing listens there; New succeeds, Send and Check fail naming the
	// address.
	o, err := New(Options{Address: "tcp://127.0.0.1:1", DialTimeout: time.Second}, nil)
	if err != nil {
		t.Fatalf("New dialed: %v", err)
	}
	b, _ := outputstest.NewBatch(1, 1)
	err = o.Send(context.Background(), b)
	if err == nil || !strings.Contains(err.Error(), "tcp://127.0.0.1:1") || outputs.IsPermanent(err) {
		t.Fatalf("Send to a closed port = %v", err)
	}
	if err := o.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "tcp://127.0.0.1:1") {
		t.Fatalf("Check = %v", err)
	}
}

func TestTLS(t *testing.T) {
	t.Run("verifies the server with the CA file", func(t *testing.T) {
		r := newTLSReceiver(t, nil)
		o := newOutput(t, r, nil)
		if err := o.Check(context.Background()); err != nil {
			t.Fatalf("Check: %v", err)
		}
		b, _ := outputstest.NewBatch(3, 10)
		send(t, o, b)
		r.wait(10)
	})
	t.Run("fails with a CA that did not sign the server's certificate", func(t *testing.T) {
		r := newTLSReceiver(t, nil)
		other := testPKI(t)
		o := newOutput(t, r, func(o *Options) { o.TLS.CAFile = other.caFile })
		b, _ := outputstest.NewBatch(3, 10)
		err := o.Send(context.Background(), b)
		var uerr x509UnknownAuthority
		if err == nil || !errors.As(err, &uerr) || !strings.Contains(err.Error(), r.url()) {
			t.Fatalf("Send = %v, want an unknown authority error naming %s", err, r.url())
		}
		if err := o.Check(context.Background()); err == nil {
			t.Fatal("Check succeeded with the wrong CA")
		}
		if n := len(r.messages()); n != 0 {
			t.Fatalf("the receiver got %d messages", n)
		}
	})
	t.Run("fails when the server name does not match", func(t *testing.T) {
		r := newTLSReceiver(t, nil)
		o := newOutput(t, r, func(o *Options) { o.TLS.ServerName = "siem.example.com" })
		b, _ := outputstest.NewBatch(3, 1)
		if err := o.Send(context.Background(), b); err == nil || !strings.Contains(err.Error(), "siem.example.com") {
			t.Fatalf("Send = %v, want a name mismatch", err)
		}
	})
	t.Run("presents a client certificate", func(t *testing.T) {
		r := newTLSReceiver(t, func(r *receiver) {
			r.tls.ClientAuth = tlsRequireAndVerify
		})
		p := testPKIFor(t, r)
		o := newOutput(t, r, nil)
		b, _ := outputstest.NewBatch(3, 1)
		// In TLS 1.3 the server refuses after the client's handshake has
		// ended: Send must notice instead of writing into the void.
		if err := o.Send(context.Background(), b); err == nil || !strings.Contains(err.Error(), "certificate required") {
			t.Fatalf("Send without a client certificate = %v, want the server's refusal", err)
		}
		if err := o.Check(context.Background()); err == nil {
			t.Fatal("Check without a client certificate succeeded")
		}
		o = newOutput(t, r, func(o *Options) { o.TLS.CertFile, o.TLS.KeyFile = p.clientCertFile, p.clientKeyFile })
		send(t, o, b)
		r.wait(1)
	})
}

// reconnect: the receiver restarts between two batches.
func TestReconnectsAfterTheReceiverClosedTheConnection(t *testing.T) {
	for _, scheme := range []string{"tcp", "tls"} {
		t.Run(scheme, func(t *testing.T) {
			var r *receiver
			if scheme == "tls" {
				r = newTLSReceiver(t, nil)
			} else {
				r = newReceiver(t, scheme, nil)
			}
			o := newOutput(t, r, nil)
			var want []string
			for i := range 5 {
				b, ids := outputstest.NewBatch(uint64(100+i), 50)
				send(t, o, b)
				want = append(want, ids...)
				r.wait(len(want))
				r.closeConns()
				time.Sleep(10 * time.Millisecond) // let the FIN arrive
			}
			if got := r.auditIDs(); !reflect.DeepEqual(got, want) {
				t.Fatalf("received %d events, want %d without loss", len(got), len(want))
			}
		})
	}
}

func TestAReceiverThatIsDownFailsTheBatchUntilItIsBack(t *testing.T) {
	r := newReceiver(t, "tcp", nil)
	o := newOutput(t, r, nil)
	b, ids := outputstest.NewBatch(5, 20)
	send(t, o, b)
	r.wait(20)
	r.failNext(2)
	for i := range 2 {
		err := o.Send(context.Background(), b)
		if err == nil || !strings.Contains(err.Error(), "connection refused") || outputs.IsPermanent(err) {
			t.Fatalf("Send %d while down = %v, want connection refused", i, err)
		}
	}
	send(t, o, b)
	if got := r.wait(40); len(got) != 40 {
		t.Fatalf("received %d", len(got))
	}
	if got := r.auditIDs()[20:]; !reflect.DeepEqual(got, ids) {
		t.Fatal("the batch sent after the receiver came back is not complete")
	}
}

func TestCutObjects(t *testing.T) {
	cases := []struct{ name, line, cut string }{
		{"both objects, annotations after them",
			`{"kind":"Event","auditID":"a","requestObject":{"x":[1,{"y":"]}"}]},"responseObject":{"z":1},"stageTimestamp":"t","annotations":{"k":"v"}}`,
			"requestObject,responseObject"},
		{"only a request object, empty annotations",
			`{"kind":"Event","requestObject":{"x":1},"annotations":{}}`, "requestObject"},
		{"only a response object, no annotations",
			`{"kind":"Event","responseObject":"text","auditID":"a"}`, "responseObject"},
		{"objects first, with spaces",
			`{ "requestObject" : {"a":1} , "responseObject" : [1,2] , "kind" : "Event" , "annotations" : { "k" : "v" } }`, "requestObject,responseObject"},
		{"objects last, annotations before them",
			`{"kind":"Event","annotations":{"k":"v"},"requestObject":{"a":1},"responseObject":null}`, "requestObject,responseObject"},
		{"objects apart",
			`{"requestObject":{"a":1},"kind":"Event","responseObject":{"b":2}}`, "requestObject,responseObject"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ev parser.Event
			line := []byte(c.line)
			if err := parser.Scan(line, &ev); err != nil {
				t.Fatal(err)
			}
			got, ok := outputs.CutObjects([]byte("prefix"), line, &ev, 0)
			if !ok || !bytes.HasPrefix(got, []byte("prefix")) {
				t.Fatalf("cutObjects = %q, %v", got, ok)
			}
			got = got[len("prefix"):]
			checkCut(t, []byte(c.line), got, c.cut)
		})
	}
	var ev parser.Event
	line := []byte(`{"kind":"Event","auditID":"a"}`)
	if err := parser.Scan(line, &ev); err != nil {
		t.Fatal(err)
	}
	if _, ok := outputs.CutObjects(nil, line, &ev, 0); ok {
		t.Fatal("cut an event without objects")
	}
}

// checkCut checks that cut is orig without requestObject and responseObject
// and with the annotation naming them, by decoding both with encoding/json.
func checkCut(t testing.TB, orig, cut []byte, what string) {
	t.Helper()
	var want, got map[string]any
	if err := json.Unmarshal(orig, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(cut, &got); err != nil {
		t.Fatalf("the cut event is not valid JSON: %v\n%s", err, cut)
	}
	for _, member := range strings.Split(what, ",") {
		delete(want, member)
	}
	ann, _ := want["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
	}
	ann["audittail.io/truncated"] = what
	want["annotations"] = ann
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("cut event\n got %s\nwant %v", cut, want)
	}
}

func TestALargeEventIsSentWithoutItsObjectsOrRejected(t *testing.T) {
	big := strings.Repeat("x", 3000)
	small := `{"kind":"Event","auditID":"small","stage":"ResponseComplete","verb":"get","stageTimestamp":"2026-11-23T10:54:44.671393Z"}`
	cut := `{"kind":"Event","auditID":"cut","stage":"ResponseComplete","verb":"create","requestObject":{"data":"` + big + `"},"responseObject":{"data":"` + big + `"},"stageTimestamp":"2026-11-23T10:54:44.671393Z","annotations":{"a":"b"}}`
	huge := `{"kind":"Event","auditID":"huge","stage":"ResponseComplete","verb":"create","requestObject":{},"annotations":{"a":"` + big + `"}}`
	notEvent := strings.Repeat("y", 3000)
	r := newReceiver(t, "tcp", nil)
	o := newOutput(t, r, func(o *Options) { o.MaxMessageBytes = 2048 })
	b := batchOf(small, cut, huge, notEvent, small)
	err := o.Send(context.Background(), b)
	var rej *outputs.RejectedError
	if !errors.As(err, &rej) || !reflect.DeepEqual(rej.Lines, []int{2, 3}) || !strings.Contains(err.Error(), "max_message_bytes (2048)") {
		t.Fatalf("Send = %v, want lines 2 and 3 rejected", err)
	}
	msgs := r.wait(3)
	if len(msgs) != 3 {
		t.Fatalf("received %d messages, want 3", len(msgs))
	}
	if o.Truncated() != 1 {
		t.Fatalf("Truncated() = %d, want 1", o.Truncated())
	}
	sm := msgs[1].(*rfc5424.SyslogMessage)
	body := strings.TrimPrefix(*sm.Message, "\uFEFF")
	checkCut(t, []byte(cut), []byte(body), "requestObject,responseObject")
	if (*sm.StructuredData)[DefaultSDID]["auditID"] != "cut" {
		t.Fatal("the cut event lost its structured data")
	}
}

func TestEncodingAllocatesNothingPerEvent(t *testing.T) {
	o, err := New(Options{Address: "tcp://127.0.0.1:514", Hostname: testHost, MaxMessageBytes: 256 << 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := outputstest.NewBatch(9, 100)
	now := time.Now()
	for i := range b.Len() {
		o.encode(b.Line(i), b.Event(i), now)
	}
	allocs := testing.AllocsPerRun(10, func() {
		for i := range b.Len() {
			if _, ok := o.encode(b.Line(i), b.Event(i), now); !ok {
				t.Fatal("not encoded")
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch of 100", allocs)
	}
}

func TestSendHonoursTheContextAndClose(t *testing.T) {
	r := newReceiver(t, "tcp", nil)
	o := newOutput(t, r, nil)
	b, _ := outputstest.NewBatch(1, 5)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := o.Send(ctx, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with a cancelled context = %v", err)
	}
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := o.Send(context.Background(), b); !errors.Is(err, outputs.ErrClosed) {
		t.Fatalf("Send after Close = %v", err)
	}
}

func TestBlockedWriteIsInterruptedByTheContext(t *testing.T) {
	// A receiver that never reads: the write blocks once the socket buffers
	// are full, and cancelling must end it.
	ln, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			time.Sleep(10 * time.Second)
		}
	}()
	o, err := New(Options{Address: "tcp://" + ln.Addr().String(), Hostname: testHost, MaxMessageBytes: 256 << 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	b, _ := outputstest.NewBatch(2, 2000) // several MB
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	// Loopback socket buffers can take a few batches (they grow to
	// several MB): send until one blocks.
	for i := 0; ; i++ {
		err = o.Send(ctx, b)
		if err != nil || i == 100 {
			break
		}
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send = %v, want the context's deadline", err)
	}
	if late := time.Since(deadlineOf(ctx)); late > 5*time.Second {
		t.Fatalf("Send returned %s after the deadline", late)
	}
}

func TestConformance(t *testing.T) {
	for _, c := range []struct {
		name, scheme string
		lf           bool
	}{{"tcp", "tcp", false}, {"tcp non-transparent", "tcp", true}, {"tls", "tls", false}} {
		t.Run(c.name, func(t *testing.T) {
			mod := func(r *receiver) { r.lf = c.lf }
			var r *receiver
			if c.scheme == "tls" {
				r = newTLSReceiver(t, mod)
			} else {
				r = newReceiver(t, c.scheme, mod)
			}
			outputstest.Run(t, outputstest.Harness{
				New:           func(t *testing.T) outputs.Output { return newOutput(t, r, nil) },
				Received:      r.auditIDs,
				FailTransient: r.failNext,
				Reset:         r.reset,
			})
		})
	}
}

type x509UnknownAuthority = x509.UnknownAuthorityError

const tlsRequireAndVerify = tls.RequireAndVerifyClientCert

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func TestStructuredDataCannotCarryControlCharacters(t *testing.T) {
	// A namespace taken from a request URL may hold an escaped newline; it
	// must not end the message under LF framing.
	got := string(appendEscaped(nil, []byte("x\n<34>1 2026-11-23T00:00:00Z h a - - - forged\x7f]\"\\")))
	if strings.ContainsAny(got, "\n\x7f") {
		t.Fatalf("control characters left in a PARAM-VALUE: %q", got)
	}
	if want := `x?<34>1 2026-11-23T00:00:00Z h a - - - forged?\]\"\\`; got != want {
		t.Fatalf("escaped %q, want %q", got, want)
	}
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}
