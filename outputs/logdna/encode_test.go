package logdna

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/audittail/audittail/outputs/outputstest"
)

// decodeLikeJSON is what encoding/json makes of s sent as a JSON string.
func decodeLikeJSON(t *testing.T, s []byte) string {
	t.Helper()
	enc, err := json.Marshal(string(s))
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := json.Unmarshal(enc, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func checkAppendString(t *testing.T, s []byte) {
	got := appendString(nil, s)
	if !utf8.Valid(got) {
		t.Fatalf("appendString(%q) = %q, not valid UTF-8", s, got)
	}
	var dec string
	if err := json.Unmarshal(got, &dec); err != nil {
		t.Fatalf("appendString(%q) = %q, not a JSON string: %v", s, got, err)
	}
	if want := decodeLikeJSON(t, s); dec != want {
		t.Fatalf("appendString(%q) decodes to %q, want %q", s, dec, want)
	}
	if utf8.Valid(s) && dec != string(s) {
		t.Fatalf("appendString(%q) decodes to %q", s, dec)
	}
}

var stringSeeds = []string{
	"", "plain", `{"kind":"Event","a":"b\"c\\d"}`, "tab\there\nnew\rline\x00\x1f\x7f",
	"é ☃ 𝄞 \u2028\u2029", "bad \xff\xfe utf8 \xc3", "\xe2\x82", "12345678\"12345678\\", strings.Repeat("x", 100) + "\"",
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range stringSeeds {
		checkAppendString(t, []byte(s))
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range stringSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) { checkAppendString(t, s) })
}

func TestInvalidUTF8BecomesReplacementCharacters(t *testing.T) {
	line := `{"kind":"Event","auditID":"id-1","stage":"ResponseComplete","verb":"get","user":{"username":"bad` + "\xff" + `name"},"stageTimestamp":"2026-11-23T10:54:44.671393Z"}`
	b := batchOf(line)
	if b.Event(0) == nil {
		t.Skip("the parser rejects invalid UTF-8 in strings")
	}
	var e encoder
	e.lineLimit = DefaultLineLimit
	e.app = appendString([]byte(`,"app":`), []byte(DefaultApp))
	out, _, ok := e.appendEntry(nil, b.Line(0), b.Event(0), 0)
	if !ok || !utf8.Valid(out) {
		t.Fatalf("entry %q is not valid UTF-8", out)
	}
	var l wireLine
	if err := json.Unmarshal(out, &l); err != nil {
		t.Fatal(err)
	}
	if want := decodeLikeJSON(t, []byte(line)); l.Line != want {
		t.Errorf("line %q, want %q", l.Line, want)
	}
	if l.Meta["user"] != "bad\uFFFDname" {
		t.Errorf("meta user %q", l.Meta["user"])
	}
}

func TestParsesTimestampsLikeTimeParse(t *testing.T) {
	for _, s := range []string{
		"2026-11-23T10:54:44.671393Z", "2026-11-23T10:54:44Z", "2026-11-23T10:54:44.9999999Z",
		"2026-11-23T10:54:44.671393123+05:30", "2026-11-23T10:54:44.1-08:00", "2024-02-29T23:59:59.999Z",
		"1970-01-01T00:00:00Z",
	} {
		want, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := timestampMs([]byte(s))
		if !ok || got != want.UnixMilli() {
			t.Errorf("timestampMs(%s) = %d, %v, want %d", s, got, ok, want.UnixMilli())
		}
	}
	for _, s := range []string{"", "yesterday", "2026-13-23T10:54:44Z", "2026-02-30T10:54:44Z", "2026-11-23T10:54:44", "2026-11-23T10:54:44.Z", "2026-11-23 10:54:44Z", "2026-11-23t10:54:44z"} {
		if _, ok := timestampMs([]byte(s)); ok {
			t.Errorf("timestampMs(%q) accepted", s)
		}
	}
}

func TestEncodingDoesNotAllocate(t *testing.T) {
	b, _ := outputstest.NewBatch(9, 500)
	e := encoder{lineLimit: DefaultLineLimit}
	e.app = appendString([]byte(`,"app":`), []byte(DefaultApp))
	buf := make([]byte, 0, 4<<20)
	allocs := testing.AllocsPerRun(20, func() {
		buf = buf[:0]
		for i := range b.Len() {
			buf, _, _ = e.appendEntry(buf, b.Line(i), b.Event(i), 0)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch, want 0", allocs)
	}
}
