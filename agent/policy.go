package agent

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/policy"
	"github.com/audittail/audittail/source"
)

// outputPolicy is what an output's policy_file and redact keys make.
type outputPolicy struct {
	policy *policy.Policy   // nil: none
	redact *policy.Redactor // nil: none
}

// LoadOutputPolicy loads an output's policy_file and checks its redact
// entries (the agent at start, and audittail validate).
func LoadOutputPolicy(oc outputs.Config) (outputPolicy, error) {
	var p outputPolicy
	if oc.PolicyFile != "" {
		pol, err := policy.Load(oc.PolicyFile)
		if err != nil {
			return p, fmt.Errorf("policy_file: %w", err)
		}
		p.policy = pol
	}
	if len(oc.Redact) > 0 {
		r, err := policy.NewRedactor(oc.Redact)
		if err != nil {
			return p, err
		}
		p.redact = r
	}
	return p, nil
}

func (p outputPolicy) active() bool { return p.policy != nil || p.redact != nil }

// policyKey labels audittail_events_filtered_total.
type policyKey struct {
	rule   string // the rule's index, or "none" (no rule matched, or redaction only)
	action string // drop or rewrite
}

// policyStats counts what an output's policy and redaction did.
type policyStats struct {
	mu     sync.Mutex
	counts map[policyKey]int64
	saved  int64 // bytes not shipped
}

func (ps *policyStats) add(local map[policyKey]int64, saved int64) {
	if len(local) == 0 && saved == 0 {
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.counts == nil {
		ps.counts = map[policyKey]int64{}
	}
	for k, n := range local {
		ps.counts[k] += n
	}
	ps.saved += saved
}

func (ps *policyStats) snapshot() (map[policyKey]int64, int64) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make(map[policyKey]int64, len(ps.counts))
	for k, n := range ps.counts {
		out[k] = n
	}
	return out, ps.saved
}

// rewrite applies the output's policy and redaction to the lines of c in
// keep (indexes, ascending). Events kept as they are stay in the shared
// chunk's view; only when one is dropped or rewritten does the batch become
// the stream's own copy of the kept lines.
func (s *stream) rewrite(c *source.Chunk, keep []int) {
	op := s.out.policy
	type entry struct {
		i          int // line of c, or -1: s.rwBuf[start:end]
		start, end int
	}
	s.entries = s.entries[:0]
	s.rwBuf = s.rwBuf[:0]
	var local map[policyKey]int64 // made on the first change: none for a chunk kept whole
	var saved int64
	changedAny := false
	for _, i := range keep {
		line := c.Line(i)
		if !c.OK[i] {
			s.entries = append(s.entries, entry{i: i})
			continue
		}
		ev := &c.Events[i]
		var d policy.Decision
		if op.policy != nil {
			d = op.policy.Decide(line, ev)
		}
		out, changed := policy.Rewrite(s.scratch[:0], line, ev, op.policy, d, op.redact)
		if !changed {
			s.entries = append(s.entries, entry{i: i})
			continue
		}
		if !changedAny {
			changedAny, local = true, map[policyKey]int64{}
		}
		rule := "none"
		if op.policy != nil && d.Rule >= 0 {
			rule = strconv.Itoa(d.Rule)
		}
		if out == nil {
			local[policyKey{rule, "drop"}]++
			saved += int64(len(line) + 1)
			continue
		}
		local[policyKey{rule, "rewrite"}]++
		saved += int64(len(line) - len(out))
		start := len(s.rwBuf)
		s.rwBuf = append(s.rwBuf, out...)
		s.scratch = out
		s.entries = append(s.entries, entry{i: -1, start: start, end: len(s.rwBuf)})
	}
	s.out.policyStats.add(local, saved)
	for k, n := range local {
		if k.action == "drop" {
			s.out.stats.Filtered.Add(n)
		}
	}
	if !changedAny {
		if len(keep) < c.Len() {
			s.batch.Keep(keep)
		}
		return
	}
	s.batch.Reset()
	s.batch.Input = s.in.key
	for _, e := range s.entries {
		if e.i >= 0 {
			s.batch.Append(c.Line(e.i))
		} else {
			s.batch.Append(s.rwBuf[e.start:e.end])
		}
	}
	s.batch.Parse(nil)
}
