package outputs

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/audittail/audittail/parser"
)

// shared builds lines the way a source chunk holds them, parsed.
func shared(t *testing.T, lines ...string) (buf []byte, ends []int, evs []parser.Event, ok []bool) {
	t.Helper()
	for _, l := range lines {
		buf = append(buf, l...)
		buf = append(buf, '\n')
		ends = append(ends, len(buf))
	}
	buf = append(make([]byte, 0, 2*len(buf)), buf...) // spare capacity, as a reused chunk has
	evs, ok = make([]parser.Event, len(lines)), make([]bool, len(lines))
	start := 0
	for i, e := range ends {
		ok[i] = parser.Scan(buf[start:e-1], &evs[i]) == nil
		start = e
	}
	return buf, ends, evs, ok
}

func TestTwoViewsOfOneChunkNarrowWithoutTouchingIt(t *testing.T) {
	lines := []string{`{"kind":"Event","auditID":"a"}`, `not json`, `{"kind":"Event","auditID":"c"}`}
	buf, ends, evs, ok := shared(t, lines...)
	orig := append([]byte(nil), buf...)
	var v1, v2 Batch
	v1.View("in", buf, ends, evs, ok)
	v2.View("in", buf, ends, evs, ok)
	v1.Keep([]int{0, 2})
	if got := string(v1.Bytes()); got != lines[0]+"\n"+lines[2]+"\n" {
		t.Fatalf("narrowed view: %q", got)
	}
	if id := string(v1.Event(1).AuditID); id != "c" {
		t.Fatalf("event 1 of the narrowed view has auditID %q, want c", id)
	}
	if v2.Len() != 3 || string(v2.Line(1)) != "not json" || v2.Event(1) != nil || string(v2.Event(2).AuditID) != "c" {
		t.Fatal("narrowing one view changed the other")
	}
	if !bytes.Equal(buf, orig) || !ok[0] || ok[1] || string(evs[1].AuditID) != "" {
		t.Fatal("the shared lines or parse results were modified")
	}
}

func TestCutObjectsFindsTheAnnotationsOfAViewedEvent(t *testing.T) {
	line := `{"kind":"Event","auditID":"x","requestObject":{"a":"` + string(bytes.Repeat([]byte("y"), 500)) + `"},"annotations":{"k":"v"}}`
	buf, ends, evs, ok := shared(t, `{"kind":"Event","auditID":"first"}`, line)
	var b Batch
	b.View("in", buf, ends, evs, ok)
	out, cut := CutObjects(nil, b.Line(1), b.Event(1), 200)
	var got struct{ Annotations map[string]string }
	if err := json.Unmarshal(out, &got); err != nil || !cut || got.Annotations["k"] != "v" || got.Annotations[TruncatedAnnotation] == "" ||
		bytes.Count(out, []byte(`"annotations"`)) != 1 {
		t.Fatalf("cut %v, annotations %v (%v): %s", cut, got.Annotations, err, out)
	}
}
