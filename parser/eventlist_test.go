package parser

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

// diffSplit checks SplitEventList against encoding/json: the items it yields
// are byte for byte the elements of the last "items" array.
func diffSplit(body []byte) string {
	var got [][]byte
	err := SplitEventList(body, func(item []byte) error {
		got = append(got, item)
		return nil
	})
	var top map[string]json.RawMessage
	m, isObj := jsonObject(body)
	if !isObj {
		if err == nil {
			return "accepted a body encoding/json rejects or that is not an object"
		}
		if len(got) != 0 {
			return "yielded items from an invalid body"
		}
		return ""
	}
	if e := json.Unmarshal(body, &top); e != nil {
		return "unmarshal: " + e.Error()
	}
	var want []json.RawMessage
	raw := top["items"]
	switch items := m["items"].(type) {
	case nil:
	case []any:
		if e := json.Unmarshal(raw, &want); e != nil {
			return e.Error()
		}
		for k, it := range items {
			if _, ok := it.(map[string]any); !ok {
				if !errors.Is(err, ErrNotObject) || len(got) != k {
					return fmt.Sprintf("item %d is not an object: got error %v after %d items", k, err, len(got))
				}
				want = want[:k]
				err = nil
				break
			}
		}
	default:
		if err == nil {
			return "accepted non-array items"
		}
		return ""
	}
	if err != nil {
		return "rejected a valid EventList: " + err.Error()
	}
	if len(got) != len(want) {
		return fmt.Sprintf("got %d items, want %d", len(got), len(want))
	}
	for k := range want {
		if !bytes.Equal(got[k], want[k]) {
			return fmt.Sprintf("item %d: got %q, want %q", k, got[k], want[k])
		}
	}
	return ""
}

func TestSplitEventListAgreesWithEncodingJSON(t *testing.T) {
	for _, in := range seedInputs(t) {
		if msg := diffSplit(in); msg != "" {
			t.Errorf("input %.200q: %s", in, msg)
		}
	}
	for _, in := range []string{
		`{"items":[]}`,
		`{"items":null}`,
		`{"kind":"EventList"}`,
		`{"items":[{}],"items":[{"a":1},{"b":2}]}`,
		`{"it\u0065ms":[{"a":1}]}`,
		`{"items":[{"a":1},2]}`,
		`{"items":{"a":1}}`,
		`{"items":[{"a":1}`,
		`{"items":[{"a":1}]}x`,
		" \n{ \"items\" : [ { \"a\" : 1 } ,\n { } ] }\n",
	} {
		if msg := diffSplit([]byte(in)); msg != "" {
			t.Errorf("input %q: %s", in, msg)
		}
	}
}

func TestSplitEventListYieldsScannableItems(t *testing.T) {
	body := []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + minimal + `,` + minimal + `]}`)
	n := 0
	err := SplitEventList(body, func(item []byte) error {
		n++
		var ev Event
		if err := Scan(item, &ev); err != nil {
			return err
		}
		if string(ev.AuditID) != "a1" {
			t.Errorf("item %d auditID %q", n, ev.AuditID)
		}
		return nil
	})
	if err != nil || n != 2 {
		t.Fatalf("got %d items, %v", n, err)
	}
}

func TestSplitEventListStopsOnCallbackError(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := SplitEventList([]byte(`{"items":[{},{},{}]}`), func([]byte) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("got %v after %d items, want stop after 1", err, n)
	}
}

func TestSplitEventListRejectsTruncatedBodyBeforeYielding(t *testing.T) {
	n := 0
	err := SplitEventList([]byte(`{"items":[{"a":1},{"b":`), func([]byte) error { n++; return nil })
	if !errors.Is(err, ErrTruncated) || n != 0 {
		t.Errorf("got %v after %d items", err, n)
	}
}

func TestSplitEventListDoesNotAllocate(t *testing.T) {
	body := []byte(`{"kind":"EventList","items":[` + minimal + `,` + minimal + `]}`)
	fn := func([]byte) error { return nil }
	if a := testing.AllocsPerRun(100, func() { _ = SplitEventList(body, fn) }); a != 0 {
		t.Errorf("SplitEventList allocates %v times", a)
	}
}

func FuzzSplitEventList(f *testing.F) {
	for _, in := range seedInputs(f) {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if msg := diffSplit(in); msg != "" {
			t.Errorf("input %q: %s", in, msg)
		}
	})
}

func TestSplitEventListHeaderReturnsKindAndAPIVersionAndCheckRunsBeforeAnyItem(t *testing.T) {
	body := []byte(`{"items":[{"auditID":"a"}],"apiVersion":"audit.k8s.io/v1beta1","kind":"EventList"}`)
	var seen []string
	h, err := SplitEventListHeader(body, func(h EventListHeader) error {
		if len(seen) != 0 {
			t.Fatal("check ran after an item")
		}
		return nil
	}, func(item []byte) error { seen = append(seen, string(item)); return nil })
	if err != nil || string(h.Kind) != "EventList" || string(h.APIVersion) != "audit.k8s.io/v1beta1" || len(seen) != 1 {
		t.Fatalf("header %q %q, items %v, err %v", h.Kind, h.APIVersion, seen, err)
	}
	stop := errors.New("not this kind")
	_, err = SplitEventListHeader(body, func(EventListHeader) error { return stop }, func([]byte) error {
		t.Fatal("an item was yielded after check refused the body")
		return nil
	})
	if err != stop {
		t.Fatalf("check's error: %v", err)
	}
	h, err = SplitEventListHeader([]byte(`{"kind":1,"items":null}`), nil, func([]byte) error { return nil })
	if err != nil || h.Kind != nil || h.APIVersion != nil {
		t.Fatalf("a kind that is not a string: %q %q %v", h.Kind, h.APIVersion, err)
	}
	if _, err := SplitEventListHeader([]byte(`{"kind":"EventList","items":[`), nil, nil); err == nil {
		t.Fatal("a truncated body passed")
	}
}
