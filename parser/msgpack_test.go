package parser

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/audittail/audittail/parser/auditgen"
)

// diffMsgpack checks AppendMsgpack against encoding/json: it must succeed
// exactly when json.Unmarshal into an `any` yields an object, and its output,
// decoded by vmihailenco/msgpack, must equal encoding/json's value, with
// integer literals as msgpack ints and other numbers as float64.
func diffMsgpack(line []byte) string {
	prefix := []byte("prefix")
	out, err := AppendMsgpack(prefix[:len(prefix):len(prefix)], line)
	var ref any
	jerr := json.Unmarshal(line, &ref)
	_, isObj := ref.(map[string]any)
	if jerr != nil || !isObj {
		if err == nil {
			return fmt.Sprintf("AppendMsgpack accepted input encoding/json rejects (%v) or that is not an object", jerr)
		}
		var se *SyntaxError
		if !errors.As(err, &se) {
			return fmt.Sprintf("error %v is not a *SyntaxError", err)
		}
		if !bytes.Equal(out, prefix) {
			return "dst changed on error"
		}
		return ""
	}
	if err != nil {
		return fmt.Sprintf("AppendMsgpack rejected what encoding/json accepts: %v", err)
	}
	if !bytes.HasPrefix(out, prefix) {
		return "dst prefix clobbered"
	}
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var want any
	if err := d.Decode(&want); err != nil {
		return "UseNumber decode: " + err.Error()
	}
	dec := msgpack.NewDecoder(bytes.NewReader(out[len(prefix):]))
	dec.UseLooseInterfaceDecoding(true)
	got, err := dec.DecodeInterface()
	if err != nil {
		return fmt.Sprintf("msgpack decode: %v (% x)", err, out[len(prefix):])
	}
	if rest := dec.Buffered(); rest.(*bytes.Reader).Len() != 0 {
		return "trailing msgpack bytes"
	}
	if msg := sameValue(got, want, "$"); msg != "" {
		return msg
	}
	return ""
}

func sameValue(got, want any, path string) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: got %T %v, want object with %d keys", path, got, got, len(w))
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return fmt.Sprintf("%s: key %q missing", path, k)
			}
			if msg := sameValue(gv, wv, path+"."+k); msg != "" {
				return msg
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: got %T %v, want array of %d", path, got, got, len(w))
		}
		for k := range w {
			if msg := sameValue(g[k], w[k], fmt.Sprintf("%s[%d]", path, k)); msg != "" {
				return msg
			}
		}
	case json.Number:
		s := string(w)
		integer := !strings.ContainsAny(s, ".eE")
		switch g := got.(type) {
		case int64:
			if n, err := strconv.ParseInt(s, 10, 64); !integer || err != nil || n != g {
				return fmt.Sprintf("%s: got int %d for %s", path, g, s)
			}
		case uint64:
			if n, err := strconv.ParseUint(s, 10, 64); !integer || err != nil || n != g {
				return fmt.Sprintf("%s: got uint %d for %s", path, g, s)
			}
		case float64:
			if _, err := strconv.ParseInt(s, 10, 64); integer && err == nil {
				return fmt.Sprintf("%s: got float for int64 literal %s", path, s)
			}
			if _, err := strconv.ParseUint(s, 10, 64); integer && err == nil {
				return fmt.Sprintf("%s: got float for uint64 literal %s", path, s)
			}
			f, _ := strconv.ParseFloat(s, 64)
			if f != g || math.Signbit(f) != math.Signbit(g) {
				return fmt.Sprintf("%s: got float %v for %s", path, g, s)
			}
		default:
			return fmt.Sprintf("%s: got %T %v for number %s", path, got, got, s)
		}
	default:
		if got != want {
			return fmt.Sprintf("%s: got %T %#v, want %T %#v", path, got, got, want, want)
		}
	}
	return ""
}

func TestAppendMsgpackAgreesWithEncodingJSONOnSeeds(t *testing.T) {
	for _, in := range seedInputs(t) {
		if msg := diffMsgpack(in); msg != "" {
			t.Errorf("input %.200q: %s", in, msg)
		}
	}
}

func TestAppendMsgpackAgreesWithEncodingJSONOnGeneratedEvents(t *testing.T) {
	g := auditgen.New(3)
	ts := time.Date(2026, 11, 20, 8, 15, 0, 0, time.UTC)
	for i := 0; i < 2000; i++ {
		line := g.AppendMixed(nil, ts)
		if msg := diffMsgpack(line); msg != "" {
			t.Fatalf("line %d %.300q: %s", i, line, msg)
		}
	}
}

func TestAppendMsgpackEdgeCases(t *testing.T) {
	for _, in := range []string{
		`{}`,
		`{"a":[]}`,
		`{"a":{}}`,
		`{"n":[0,-0,1,-1,31,-32,-33,127,128,255,256,-128,-129,65535,65536,-32768,-32769,4294967295,4294967296,-2147483648,-2147483649]}`,
		`{"n":[9223372036854775807,9223372036854775808,-9223372036854775808,-9223372036854775809,18446744073709551615,18446744073709551616]}`,
		`{"f":[0.5,-0.0,1e2,1E-2,1.7976931348623157e308,5e-324,1e-400]}`,
		`{"big":1e400}`,
		`{"big":-1e309}`,
		`{"s":["","a","\u00e9\ud83d\ude00\ud800x","\"\\\/\b\f\n\r\t","` + strings.Repeat("x", 31) + `","` + strings.Repeat("x", 32) + `","` + strings.Repeat("é", 200) + `","` + strings.Repeat("\\n", 300) + `","` + strings.Repeat("y", 70000) + `"]}`,
		"{\"bad utf8\":\"\xff\xfe\xc3\",\"k\xff\":1}",
		`{"dup":1,"dup":2}`,
		`{"many":[` + strings.Repeat("1,", 70000) + `1]}`,
		`{"o":{` + strings.Repeat(`"k":1,`, 20) + `"z":true}}`,
		`{"t":true,"f":false,"n":null}`,
		deep(300),
		`[1]`,
		`{"a":1`,
		`{"a":1}x`,
	} {
		if msg := diffMsgpack([]byte(in)); msg != "" {
			t.Errorf("input %.200q: %s", in, msg)
		}
	}
	_, err := AppendMsgpack(nil, []byte(`{"big":1e400}`))
	if !errors.Is(err, ErrNumberRange) {
		t.Errorf("1e400: error %v, want ErrNumberRange", err)
	}
}

func TestAppendMsgpackIsCompact(t *testing.T) {
	out, err := AppendMsgpack(nil, []byte(`{"a":[1,{}],"b":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x82, 0xa1, 'a', 0x92, 0x01, 0x80, 0xa1, 'b', 0xa1, 'x'}
	if !bytes.Equal(out, want) {
		t.Errorf("got % x, want % x", out, want)
	}
}

func TestAppendMsgpackDoesNotAllocateWithRoom(t *testing.T) {
	g := auditgen.New(5)
	ts := time.Date(2026, 11, 20, 8, 15, 0, 0, time.UTC)
	var lines [][]byte
	for i := 0; i < 20; i++ {
		lines = append(lines, g.AppendMixed(nil, ts))
	}
	lines = append(lines, []byte(`{"s":"\u00e9\n","f":1.5e3,"n":-12345678901}`))
	buf := make([]byte, 0, 1<<20)
	k := 0
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = AppendMsgpack(buf[:0], lines[k%len(lines)]); err != nil {
			t.Fatal(err)
		}
		k++
	})
	if allocs != 0 {
		t.Errorf("AppendMsgpack allocates %v times per call, want 0", allocs)
	}
}

func FuzzAppendMsgpack(f *testing.F) {
	for _, in := range seedInputs(f) {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if msg := diffMsgpack(in); msg != "" {
			t.Errorf("input %q: %s", in, msg)
		}
	})
}

func TestAppendMsgpackNeverOutgrowsTheDocumentedRoom(t *testing.T) {
	for _, in := range []string{
		`{"a":[[],[],[],{},{},[[[]]]]}`,
		"{\"s\":\"\xff\xff\xff\xff\",\"t\":[\"\xff\",\"\xfe\"]}",
		`{"f":[1e1,1e1,1e1,0.1,-0.1]}`,
		`{"":{"":{"":[]}}}`,
	} {
		buf := make([]byte, 3, 3+5*len(in)+16)
		out, err := AppendMsgpack(buf, []byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if &out[0] != &buf[0] {
			t.Errorf("%q: AppendMsgpack reallocated within the documented room", in)
		}
	}
}
