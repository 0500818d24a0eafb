package parser

import (
	"encoding/json"
	"testing"
)

func TestUnquoteDecodesLikeEncodingJSON(t *testing.T) {
	for _, raw := range []string{
		``, `plain`, `\"\\\/\b\f\n\r\t`, `\u00e9\u6f22\uD83D\uDE00`,
		`\ud800`, `\udc00`, `\ud800\ud800`, `\ud800x`, `\ud83d\ude00\udc00`, `\ud800\u0041`,
		"\xff", "a\xc3", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x80\xa8", `\u0000`,
	} {
		var want string
		if err := json.Unmarshal([]byte(`"`+raw+`"`), &want); err != nil {
			t.Fatalf("encoding/json rejects %q: %v", raw, err)
		}
		got, err := Unquote([]byte("pre"), []byte(raw))
		if err != nil || string(got) != "pre"+want {
			t.Errorf("Unquote(%q) = %q, %v; want %q", raw, got, err, "pre"+want)
		}
	}
}

func TestUnquoteRejectsWhatJSONRejects(t *testing.T) {
	for _, raw := range []string{`\`, `\x`, `\u12`, `\u12g4`, `a"b`, "a\nb", `\'`} {
		if _, err := Unquote(nil, []byte(raw)); err == nil {
			t.Errorf("Unquote(%q) succeeded", raw)
		}
	}
}

func TestUnquoteDoesNotAllocateWithRoom(t *testing.T) {
	raw := []byte(`RBAC: allowed by \"x\" \u00e9 \ud83d\ude00 ` + "\xff")
	buf := make([]byte, 0, 256)
	if a := testing.AllocsPerRun(100, func() { buf, _ = Unquote(buf[:0], raw) }); a != 0 {
		t.Errorf("Unquote allocates %v times", a)
	}
}

func FuzzUnquote(f *testing.F) {
	for _, s := range []string{``, `a\u00e9\ud800\udc00`, `\ud800\ud800`, "\xff\xc3", `\"`, `\x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var want string
		jerr := json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &want)
		got, err := Unquote(nil, raw)
		if (jerr == nil) != (err == nil) {
			t.Fatalf("Unquote(%q) error %v, encoding/json error %v", raw, err, jerr)
		}
		if err == nil && string(got) != want {
			t.Fatalf("Unquote(%q) = %q, want %q", raw, got, want)
		}
	})
}
