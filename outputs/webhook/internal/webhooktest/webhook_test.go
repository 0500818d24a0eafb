package webhooktest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/audittail/audittail/internal/e2etest"
	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/outputstest"
	"github.com/audittail/audittail/outputs/webhook"
)

// Falco k8saudit's limits (its webhookMaxBatchSize and maxEventSize
// defaults).
const (
	falcoMaxBody  = 12 << 20
	falcoMaxEvent = 256 << 10
)

// falco is a webhook consumer that decodes every request with
// k8s.io/apiserver's audit v1 types through apimachinery's codec (an
// EventList of group audit.k8s.io, version v1, or an error) and enforces
// Falco's limits: a body over 12 MiB is answered 413, an event over
// 256 KiB counts as dropped (Falco drops it).
type falco struct {
	decoder runtime.Decoder

	mu      sync.Mutex
	ids     []string
	keys    map[string]int
	dropped int
	bad     error
	fail    []int // scripted answers
}

func newFalco(t testing.TB) *falco {
	scheme := runtime.NewScheme()
	if err := auditv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return &falco{decoder: serializer.NewCodecFactory(scheme).UniversalDeserializer(), keys: map[string]int{}}
}

func (f *falco) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, falcoMaxBody))
	if err != nil {
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.fail) > 0 {
		c := f.fail[0]
		f.fail = f.fail[1:]
		http.Error(w, "scripted", c)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "want a JSON POST", http.StatusBadRequest)
		return
	}
	var list auditv1.EventList
	obj, gvk, err := f.decoder.Decode(data, nil, &list)
	if err != nil || obj != &list || gvk.Group != "audit.k8s.io" || gvk.Version != "v1" || gvk.Kind != "EventList" {
		if f.bad == nil {
			f.bad = fmt.Errorf("a body that is not an audit.k8s.io/v1 EventList (%v, %v)", gvk, err)
		}
		http.Error(w, "not an EventList", http.StatusBadRequest)
		return
	}
	for _, ev := range list.Items {
		if raw, err := json.Marshal(&ev); err == nil && len(raw) > falcoMaxEvent {
			f.dropped++
			continue
		}
		id := string(ev.AuditID)
		f.ids = append(f.ids, id)
		f.keys[id+"/"+string(ev.Stage)]++
	}
}

func (f *falco) received() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ids...)
}

func (f *falco) check(t testing.TB) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bad != nil {
		t.Fatal(f.bad)
	}
	if f.dropped > 0 {
		t.Fatalf("%d events over Falco's 256 KiB limit, dropped by it", f.dropped)
	}
}

func TestConformanceAgainstAnApiserverTypesReceiver(t *testing.T) {
	f := newFalco(t)
	srv := httptest.NewServer(f)
	defer srv.Close()
	outputstest.Run(t, outputstest.Harness{
		New: func(t *testing.T) outputs.Output {
			o, err := webhook.New(webhook.Options{URL: srv.URL + "/k8s-audit"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return o
		},
		Received: f.received,
		FailTransient: func(n int) {
			f.mu.Lock()
			for range n {
				f.fail = append(f.fail, 503)
			}
			f.mu.Unlock()
		},
		FailPermanent: func(n int) {
			f.mu.Lock()
			for range n {
				f.fail = append(f.fail, 400)
			}
			f.mu.Unlock()
		},
		Reset: func() {
			f.mu.Lock()
			f.ids, f.keys, f.fail = nil, map[string]int{}, nil
			f.mu.Unlock()
		},
	})
	f.check(t)
}

// TestFalcosLimitsHold sends large events, a third of them over Falco's
// per-event limit and together far over its body limit, with the
// defaults: no request is answered 413, Falco drops nothing, every event
// arrives (the largest cut and annotated).
func TestFalcosLimitsHold(t *testing.T) {
	f := newFalco(t)
	srv := httptest.NewServer(f)
	defer srv.Close()
	o, err := webhook.New(webhook.Options{URL: srv.URL + "/k8s-audit"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	b := &outputs.Batch{Input: "t"}
	var want []string
	for i := range 120 {
		id := fmt.Sprintf("big-%03d", i)
		size := 200 << 10
		if i%3 == 0 {
			size = 300 << 10
		}
		b.Append(fmt.Appendf(nil, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":%q,"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/a/configmaps","verb":"create","user":{"username":"alice"},"objectRef":{"resource":"configmaps","namespace":"a","name":"c","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"ConfigMap","apiVersion":"v1","data":{"x":%q}},"requestReceivedTimestamp":"2026-11-23T10:54:44.671393Z","stageTimestamp":"2026-11-23T10:54:44.681393Z"}`, id, strings.Repeat("v", size)))
		want = append(want, id)
	}
	b.Parse(nil)
	if err := o.Send(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	f.check(t)
	if got := f.received(); !slices.Equal(got, want) {
		t.Fatalf("received %d of %d events", len(got), len(want))
	}
	if o.Truncated() != 40 {
		t.Errorf("Truncated() = %d, want 40", o.Truncated())
	}
}

func TestEndToEndThroughTheBinaryWithAKillMidRun(t *testing.T) {
	f := newFalco(t)
	srv := httptest.NewServer(f)
	defer srv.Close()
	e2etest.KillMidRun(t, fmt.Sprintf("  - type: webhook\n    url: %s/k8s-audit\n", srv.URL), func() map[string]int {
		f.check(t)
		f.mu.Lock()
		defer f.mu.Unlock()
		out := make(map[string]int, len(f.keys))
		for k, n := range f.keys {
			out[k] = n
		}
		return out
	})
}
