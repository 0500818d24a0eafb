package syslog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/audittail/audittail/internal/e2etest"
)

// relpKeys reads rsyslogd's file as it grows and counts auditID/stage.
type relpKeys struct {
	mu   sync.Mutex
	path string
	off  int64
	keys map[string]int
}

func (k *relpKeys) snapshot() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if f, err := os.Open(k.path); err == nil {
		st, _ := f.Stat()
		if st != nil && st.Size() > k.off {
			buf := make([]byte, st.Size()-k.off)
			n, _ := f.ReadAt(buf, k.off)
			buf = buf[:n]
			if end := bytes.LastIndexByte(buf, '\n'); end >= 0 {
				for _, l := range bytes.Split(buf[:end], []byte("\n")) {
					var ev struct{ AuditID, Stage string }
					if json.Unmarshal(bytes.TrimPrefix(l, bom), &ev) == nil {
						k.keys[ev.AuditID+"/"+ev.Stage]++
					}
				}
				k.off += int64(end + 1)
			}
		}
		f.Close()
	}
	out := make(map[string]int, len(k.keys))
	for key, n := range k.keys {
		out[key] = n
	}
	return out
}

// TestRELPEndToEndThroughTheBinaryWithAKillMidRun: the agent binary ships
// to rsyslogd's imrelp, is SIGKILLed once and restarted; every
// auditID+stage reaches rsyslogd's file.
func TestRELPEndToEndThroughTheBinaryWithAKillMidRun(t *testing.T) {
	r := startRELP(t, nil)
	k := &relpKeys{path: r.out, keys: map[string]int{}}
	e2etest.KillMidRun(t, fmt.Sprintf("  - type: syslog\n    address: relp://%s\n    hostname: e2e\n    max_message_bytes: 256KiB\n", r.addr), k.snapshot)
}
