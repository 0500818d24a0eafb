package ibmcloudlogs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/audittail/audittail/internal/e2etest"
)

// TestEndToEndThroughTheBinaryWithAKillMidRun runs the agent against the
// IAM and singles endpoints, with tokens that expire every few seconds,
// SIGKILLs it once mid-run and restarts it: every auditID+stage arrives.
func TestEndToEndThroughTheBinaryWithAKillMidRun(t *testing.T) {
	r := newReceiver(t, "e2e-key")
	r.light = true
	r.setTTL(3 * time.Second)
	key := filepath.Join(t.TempDir(), "api-key")
	if err := os.WriteFile(key, []byte("e2e-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e2etest.KillMidRun(t, fmt.Sprintf("  - type: ibmcloudlogs\n    endpoint: %s\n    iam_endpoint: %s\n    api_key_file: %s\n    computer_name: e2e\n",
		r.endpoint(), r.iamEndpoint(), key), func() map[string]int {
		r.mu.Lock()
		defer r.mu.Unlock()
		out := make(map[string]int, len(r.keys))
		for k, n := range r.keys {
			out[k] = n
		}
		return out
	})
	calls, issued := r.counts()
	t.Logf("%d token requests, %d tokens issued, %d requests refused with an expired token", calls, issued, r.unauthorized())
}
