package otlp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestOptionsAreValidatedWithTheKeyNamed(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "auth")
	os.WriteFile(secret, []byte("Bearer x\n"), 0o600)
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, c := range []struct {
		name string
		o    Options
		says string
	}{
		{"no endpoint", Options{}, "endpoint: required"},
		{"not http", Options{Endpoint: "grpc://x:4317"}, "is not an http:// or https:// URL"},
		{"credentials in the URL", Options{Endpoint: "https://u:p@x"}, "must not hold credentials"},
		{"a bad compression", Options{Endpoint: "https://x", Compression: "zstd"}, "compression: invalid value"},
		{"a bad body", Options{Endpoint: "https://x", Body: "json"}, "body: invalid value"},
		{"a token in headers", Options{Endpoint: "https://x", Headers: map[string]string{"X-Api-Key": "k"}}, "headers: X-Api-Key holds a credential"},
		{"a header twice", Options{Endpoint: "https://x", Headers: map[string]string{"X-Scope": "a"}, HeadersFiles: map[string]string{"X-Scope": secret}}, "is in both"},
		{"an empty header file", Options{Endpoint: "https://x", HeadersFiles: map[string]string{"Authorization": empty}}, "is empty"},
		{"a missing header file", Options{Endpoint: "https://x", HeadersFiles: map[string]string{"Authorization": empty + "-nope"}}, "no such file"},
		{"a tiny max_request_bytes", Options{Endpoint: "https://x", MaxRequestBytes: 100}, "max_request_bytes"},
	} {
		if _, err := New(c.o, nil); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.says)
		}
	}
	o, err := New(Options{Endpoint: "https://otel:4318/", HeadersFiles: map[string]string{"Authorization": secret}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.url != "https://otel:4318/v1/logs" {
		t.Fatalf("url %s", o.url)
	}
}

func TestANestedMessageLengthIsWrittenMinimally(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 1 << 21} {
		var b []byte
		start := begin(&b, 7)
		b = append(b, make([]byte, n)...)
		end(&b, start)
		num, typ, tl := protowire.ConsumeTag(b)
		v, vl := protowire.ConsumeBytes(b[tl:])
		if num != 7 || typ != protowire.BytesType || vl < 0 || len(v) != n || tl+vl != len(b) || vl-n != protowire.SizeVarint(uint64(n)) {
			t.Fatalf("content of %d bytes: tag %d/%d, value %d bytes, total %d", n, num, typ, len(v), len(b))
		}
	}
}

func TestWalkerStringEndsAtTheFirstUnescapedQuote(t *testing.T) {
	for _, c := range []struct{ in, want, rest string }{
		{`"plain",1`, `plain`, `,1`},
		{`"a \"quoted\" word"}`, `a \"quoted\" word`, `}`},
		{`"ends in a backslash \\"}`, `ends in a backslash \\`, `}`},
		{`"three \\\" then"x`, `three \\\" then`, `x`},
		{`""`, ``, ``},
	} {
		w := walker{s: []byte(c.in)}
		got, ok := w.str()
		if !ok || string(got) != c.want || string(w.s[w.i:]) != c.rest {
			t.Errorf("%s: got %q ok %v rest %q, want %q rest %q", c.in, got, ok, w.s[w.i:], c.want, c.rest)
		}
	}
	for _, in := range []string{`"open`, `"escaped end\"`, `x"`} {
		w := walker{s: []byte(in)}
		if got, ok := w.str(); ok {
			t.Errorf("%s: got %q, want no string", in, got)
		}
	}
}
