package agent

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/parser"
)

// parseReasons are the parse_errors_total reasons, one per parser sentinel.
var parseReasons = []string{"truncated", "not_object", "legacy_format", "bom", "too_deep", "syntax", "not_event", "invalid"}

func parseErrorReason(err error) string {
	switch {
	case errors.Is(err, parser.ErrTruncated):
		return "truncated"
	case errors.Is(err, parser.ErrNotObject):
		return "not_object"
	case errors.Is(err, parser.ErrLegacyFormat):
		return "legacy_format"
	case errors.Is(err, parser.ErrBOM):
		return "bom"
	case errors.Is(err, parser.ErrTooDeep):
		return "too_deep"
	case errors.Is(err, parser.ErrSyntax):
		return "syntax"
	case errors.Is(err, parser.ErrNotEvent):
		return "not_event"
	}
	return "invalid"
}

// OutputStats counts what one output delivered.
type OutputStats struct {
	Events       atomic.Int64 // events acknowledged by the output
	Bytes        atomic.Int64
	Batches      atomic.Int64 // batches acknowledged
	Failed       atomic.Int64 // failed Send calls
	Retries      atomic.Int64
	DeadLettered atomic.Int64 // events the sink rejected, written to the dead-letter file
	ParseDropped atomic.Int64 // invalid lines dropped (on_parse_error: drop)
	Filtered     atomic.Int64 // events outside backfill's --since/--until window, or dropped by the output's policy_file

	parseErrors [8]atomic.Int64 // by parseReasons index

	sendSeconds prometheus.Histogram

	mu           sync.Mutex
	lastEvent    time.Time // stageTimestamp of the newest delivered event
	failingSince time.Time // zero while sends succeed
}

func newOutputStats(name string) *OutputStats {
	return &OutputStats{sendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        "audittail_send_duration_seconds",
		Help:        "Time one Send of a batch to the output took, failures included.",
		ConstLabels: prometheus.Labels{"output": name},
		Buckets:     prometheus.ExponentialBuckets(0.0005, 4, 10),
	})}
}

func (s *OutputStats) parseError(reason string) {
	for i, r := range parseReasons {
		if r == reason {
			s.parseErrors[i].Add(1)
			return
		}
	}
}

// ParseErrors returns the invalid lines seen, by reason.
func (s *OutputStats) ParseErrors() map[string]int64 {
	m := map[string]int64{}
	for i, r := range parseReasons {
		if n := s.parseErrors[i].Load(); n > 0 {
			m[r] = n
		}
	}
	return m
}

func (s *OutputStats) observeSend(d time.Duration) { s.sendSeconds.Observe(d.Seconds()) }

// noteSuccess records the newest event delivered and that sends succeed.
func (s *OutputStats) noteSuccess(pb *outputs.Batch) {
	var ts time.Time
	if ev := pb.Event(pb.Len() - 1); ev != nil {
		if t, err := parser.ParseTime(ev.StageTimestamp); err == nil {
			ts = t
		}
	}
	s.mu.Lock()
	if ts.After(s.lastEvent) {
		s.lastEvent = ts
	}
	s.failingSince = time.Time{}
	s.mu.Unlock()
}

func (s *OutputStats) noteFailure() {
	s.mu.Lock()
	if s.failingSince.IsZero() {
		s.failingSince = time.Now()
	}
	s.mu.Unlock()
}

// FailingFor returns how long sends have been failing (0 if the last send
// succeeded).
func (s *OutputStats) FailingFor() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failingSince.IsZero() {
		return 0
	}
	return time.Since(s.failingSince)
}

// LastEvent returns the stageTimestamp of the newest delivered event.
func (s *OutputStats) LastEvent() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastEvent
}

// logLimiter lets one log line per reason through every interval and
// counts the ones it held back.
type logLimiter struct {
	mu    sync.Mutex
	last  map[string]time.Time
	held  map[string]int
	every time.Duration
}

func (l *logLimiter) log(reason string, emit func(suppressed int)) {
	l.mu.Lock()
	if l.last == nil {
		l.last, l.held = map[string]time.Time{}, map[string]int{}
		if l.every == 0 {
			l.every = 10 * time.Second
		}
	}
	now := time.Now()
	if t, ok := l.last[reason]; ok && now.Sub(t) < l.every {
		l.held[reason]++
		l.mu.Unlock()
		return
	}
	n := l.held[reason]
	l.last[reason], l.held[reason] = now, 0
	l.mu.Unlock()
	emit(n)
}
