package policy

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/audittail/audittail/parser"
	"github.com/audittail/audittail/parser/auditgen"
)

// hasDuplicateKeys reports whether an object of the JSON text b repeats a
// key (after decoding). The oracle works on decoded maps, where the last
// of the repeated members wins, while Rewrite changes each of them.
func hasDuplicateKeys(b []byte) bool {
	d := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		obj  bool
		key  bool // the next token in an object is a key
		seen map[string]bool
	}
	var stack []*frame
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return false
		}
		if err != nil {
			return true
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.key {
			if k, ok := tok.(string); ok {
				if top.seen[k] {
					return true
				}
				top.seen[k] = true
				top.key = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, key: true, seen: map[string]bool{}})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].obj {
			stack[len(stack)-1].key = true
		}
	}
}

var fuzzEntries = []string{PresetSecrets, PresetTokens, "requestObject.spec.containers[*].env[*].value", "responseObject.items[1]", "annotations.*", `user.extra["a.b"]`}

// FuzzRewrite checks that Rewrite (policy and redaction) always produces
// valid JSON, and that decoded it is the input with exactly the selected
// changes (the oracle), for any event parser.Scan accepts.
func FuzzRewrite(f *testing.F) {
	for _, l := range allReal(f) {
		f.Add(l, uint8(1), true)
	}
	g := auditgen.New(3)
	ts := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for n := 0; n < 30; n++ {
		f.Add(g.AppendMixed(nil, ts), uint8(n%4), n%2 == 0)
	}
	f.Add([]byte(secretCreate), uint8(2), true)
	f.Add([]byte(`{"requestObject":{"metadata":{"managedFields":[]}},"annotations":null}`), uint8(1), true)
	f.Add([]byte(`{"level":"Request","objectRef":{"resource":"secrets"},"requestObject":{"data":{"a":1,"b":[{},null]}}}`), uint8(3), false)
	r, err := NewRedactor(fuzzEntries)
	if err != nil {
		f.Fatal(err)
	}
	p, err := Parse("fuzz.yaml", []byte(header+"rules: [{level: Metadata}]\n"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, line []byte, level uint8, mf bool) {
		var ev parser.Event
		if parser.Scan(line, &ev) != nil || !json.Valid(line) || hasDuplicateKeys(line) {
			return
		}
		d := Decision{Level: Level(level % 4), OmitManagedFields: mf}
		check(t, line, p, d, r, fuzzEntries)
		check(t, line, nil, Decision{}, r, fuzzEntries)
		check(t, line, p, d, nil, nil)
	})
}
