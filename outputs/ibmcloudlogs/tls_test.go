package ibmcloudlogs

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/outputstest"
)

func TestVerifiesTLS(t *testing.T) {
	r := newTLSReceiver(t, testKey)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw}), 0o600)
	mk := func(tlsOpts TLSOptions) *Output {
		return newOutput(t, r, func(o *Options) { o.TLS = tlsOpts })
	}
	b, _ := outputstest.NewBatch(1, 2)
	if err := send(mk(TLSOptions{}), b); err == nil || outputs.IsPermanent(err) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Send to an unknown CA = %v, want a retryable certificate error", err)
	}
	if err := send(mk(TLSOptions{CAFile: ca}), b); err != nil {
		t.Errorf("Send with tls.ca_file: %v", err)
	}
	// server_name is the ingestion endpoint's: IAM is still verified as
	// 127.0.0.1, the endpoint as example.com (both in httptest's
	// certificate).
	if err := send(mk(TLSOptions{CAFile: ca, ServerName: "example.com"}), b); err != nil {
		t.Errorf("Send with tls.server_name: %v", err)
	}
	calls, _ := r.counts()
	err := send(mk(TLSOptions{CAFile: ca, ServerName: "other.example"}), b)
	if err == nil || !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), r.host()) {
		t.Errorf("Send with a wrong tls.server_name = %v, want a certificate error from the endpoint", err)
	}
	if after, _ := r.counts(); after != calls+1 {
		t.Errorf("IAM saw %d token requests, want the one verified without server_name", after-calls)
	}
	if err := send(mk(TLSOptions{InsecureSkipVerify: true}), b); err != nil {
		t.Errorf("Send with tls.insecure_skip_verify: %v", err)
	}
	if err := mk(TLSOptions{CAFile: ca}).Check(context.Background()); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestKeepsSecretsOutOfLogs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := newReceiver(t, testKey)
	path := keyFile(t, "wrong-key-789")
	opts := options(t, r)
	opts.APIKeyFile = path
	o, err := New(opts, log)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	b, _ := outputstest.NewBatch(1, 3)
	var errs []string
	note := func(err error) {
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	note(send(o, b)) // refused key
	os.WriteFile(path, []byte(testKey), 0o600)
	note(send(o, b))
	r.revoke()
	note(send(o, b)) // 401, new token
	r.then(answer{code: 400, body: "bad"})
	note(send(o, b))
	note(o.Check(context.Background()))
	all := buf.String() + strings.Join(errs, "\n")
	if !strings.Contains(buf.String(), "new one") {
		t.Errorf("log %q does not tell of the new token", buf.String())
	}
	for _, secret := range []string{testKey, "wrong-key-789", "tok-1", "tok-2"} {
		if strings.Contains(all, secret) {
			t.Errorf("logs or errors show %q:\n%s", secret, all)
		}
	}
}

func TestEncodesWithoutAllocating(t *testing.T) {
	enc := newEncoder("kubernetes", "kube-audit", "cp-1", 16<<10)
	b, _ := outputstest.NewBatch(1, 100)
	now := time.Now()
	var buf []byte
	run := func() {
		buf = buf[:0]
		for i := range b.Len() {
			buf, _ = enc.appendEntry(buf, b.Line(i), b.Event(i), now)
		}
	}
	run()
	if n := testing.AllocsPerRun(20, run); n != 0 {
		t.Errorf("%v allocations per batch of whole events, want 0", n)
	}
}

func FuzzEntry(f *testing.F) {
	b, _ := outputstest.NewBatch(9, 20)
	for i := range b.Len() {
		f.Add(string(b.Line(i)))
	}
	f.Add(bigEvent("big", 100, 3000, `{"a":"b"}`))
	f.Add(`{"kind":"Event","auditID":"x","stageTimestamp":"bad","responseStatus":{"code":599}}`)
	f.Add("not json \x00 \xff \u2028")
	enc := newEncoder("app\"", "sub\\", "host\n", 2048)
	f.Fuzz(func(t *testing.T, line string) {
		if strings.ContainsRune(line, '\n') {
			return
		}
		bb := batchOf(line)
		out, res := enc.appendEntry(nil, bb.Line(0), bb.Event(0), time.Now())
		if res == entryTooLarge {
			if len(out) != 0 {
				t.Fatalf("a rejected entry appended %q", out)
			}
			return
		}
		if len(out) > enc.limit {
			t.Fatalf("entry of %d bytes over the limit %d", len(out), enc.limit)
		}
		var e wireEntry
		if err := json.Unmarshal(out, &e); err != nil {
			t.Fatalf("entry %q is not JSON: %v", out, err)
		}
		if e.ApplicationName != "app\"" || e.SubsystemName != "sub\\" || e.ComputerName != "host\n" || e.Severity < 1 || e.Severity > 6 {
			t.Fatalf("entry %+v", e)
		}
		if res == entryWhole && utf8.ValidString(line) && e.Text != line {
			t.Fatalf("text %q, want %q", e.Text, line)
		}
	})
}
