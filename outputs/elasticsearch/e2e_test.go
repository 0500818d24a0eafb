package elasticsearch

import (
	"fmt"
	"testing"

	"github.com/audittail/audittail/internal/e2etest"
)

// TestEndToEndExactlyOnceThroughTheBinaryWithAKillMidRun runs the agent
// against the receiver, SIGKILLs it once mid-run and restarts it: every
// auditID+stage must be stored, and stored once (the re-sent batch is
// answered 409), counted from the documents' own fields.
func TestEndToEndExactlyOnceThroughTheBinaryWithAKillMidRun(t *testing.T) {
	r, srv := newReceiver(t, "es8")
	r.light = true
	e2etest.KillMidRun(t, fmt.Sprintf("  - type: elasticsearch\n    urls: [%q]\n    index: %s\n", srv.URL, index), func() map[string]int {
		if err := r.errs(); err != nil {
			t.Fatal(err)
		}
		return r.createdSnapshot()
	})
	twice := 0
	for k, n := range r.createdSnapshot() {
		if n > 1 {
			if twice == 0 {
				t.Errorf("%s stored %d times", k, n)
			}
			twice++
		}
	}
	if twice > 0 {
		t.Fatalf("%d events stored more than once: not exactly once", twice)
	}
	r.mu.Lock()
	requests, conflicts := r.requests, r.conflicts
	r.mu.Unlock()
	t.Logf("every event stored exactly once in %d bulk requests; %d re-sent documents answered 409", requests, conflicts)
}
