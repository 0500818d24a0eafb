package policy

import (
	"encoding/json"
	"testing"

	"github.com/audittail/audittail/parser"
)

func TestAddAnnotationsPutsThemInTheEventsAnnotations(t *testing.T) {
	a := NewAnnotations(map[string]string{"audittail.io/cluster": "prod-eu-1", "team": `a "b"`})
	for _, c := range []struct{ name, line string }{
		{"an annotations object", `{"kind":"Event","auditID":"a","annotations":{"authorization.k8s.io/decision":"allow"}}`},
		{"an empty one", `{"kind":"Event","auditID":"a","annotations":{ }}`},
		{"none", `{"kind":"Event","auditID":"a"}`},
		{"null", `{"kind":"Event","auditID":"a","annotations":null}`},
		{"an empty event", `{}`},
	} {
		var ev parser.Event
		line := []byte(c.line)
		if err := parser.Scan(line, &ev); err != nil {
			t.Fatal(err)
		}
		out := a.Add(nil, line, ev.Annotations)
		var got, want map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%s: not JSON: %v: %s", c.name, err, out)
		}
		json.Unmarshal([]byte(c.line), &want)
		ann, _ := got["annotations"].(map[string]any)
		if ann["audittail.io/cluster"] != "prod-eu-1" || ann["team"] != `a "b"` {
			t.Fatalf("%s: annotations %v in %s", c.name, ann, out)
		}
		if old, ok := want["annotations"].(map[string]any); ok {
			for k, v := range old {
				if ann[k] != v {
					t.Fatalf("%s: lost %s: %s", c.name, k, out)
				}
			}
		}
		delete(got, "annotations")
		delete(want, "annotations")
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if string(g) != string(w) {
			t.Fatalf("%s: other fields changed: %s", c.name, out)
		}
	}
	if NewAnnotations(nil) != nil {
		t.Fatal("no annotations should be nil")
	}
}

func TestAddAnnotationsKeepsTheEventsOwnValueOnce(t *testing.T) {
	a := NewAnnotations(map[string]string{"audittail.io/cluster": "prod", "team": "x"})
	line := []byte(`{"auditID":"a","annotations":{"audittail.io\/cluster":"upstream","k":"v"}}`)
	var ev parser.Event
	if err := parser.Scan(line, &ev); err != nil {
		t.Fatal(err)
	}
	out := a.Add(nil, line, ev.Annotations)
	want := `{"auditID":"a","annotations":{"team":"x","audittail.io\/cluster":"upstream","k":"v"}}`
	if string(out) != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}
	line = []byte(`{"annotations":{"team":"y","audittail.io/cluster":"z"}}`)
	if err := parser.Scan(line, &ev); err != nil {
		t.Fatal(err)
	}
	if out := a.Add(nil, line, ev.Annotations); string(out) != string(line) {
		t.Fatalf("every key present: got %s", out)
	}
}
