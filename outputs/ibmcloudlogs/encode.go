package ibmcloudlogs

import (
	"strconv"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/internal/jsonstr"
	"github.com/audittail/audittail/parser"
)

// TruncatedAnnotation marks an event sent without its objects.
const TruncatedAnnotation = outputs.TruncatedAnnotation

// IBM Cloud Logs severities.
const (
	SeverityDebug    = 1
	SeverityVerbose  = 2
	SeverityInfo     = 3
	SeverityWarning  = 4
	SeverityError    = 5
	SeverityCritical = 6
)

// severityFor maps an audit event's response code to a severity: 5xx
// Error, 4xx Warning, anything else (or no code) Info.
func severityFor(code int) int {
	switch {
	case code >= 500 && code <= 599:
		return SeverityError
	case code >= 400 && code <= 499:
		return SeverityWarning
	}
	return SeverityInfo
}

// encoder builds the singles body by hand into reused buffers: no
// encoding/json and no allocation per event once the buffers have grown.
type encoder struct {
	// head is `{"applicationName":…,"subsystemName":…,"computerName":…,"severity":`,
	// escaped once.
	head    []byte
	limit   int    // the longest entry that fits a request with its brackets
	scratch []byte // a cut-down event
}

func newEncoder(app, subsystem, computer string, limit int) encoder {
	h := []byte(`{"applicationName":`)
	h = jsonstr.Append(h, []byte(app))
	h = append(h, `,"subsystemName":`...)
	h = jsonstr.Append(h, []byte(subsystem))
	h = append(h, `,"computerName":`...)
	h = jsonstr.Append(h, []byte(computer))
	h = append(h, `,"severity":`...)
	return encoder{head: h, limit: limit}
}

// entryResult is what became of one event in appendEntry.
type entryResult uint8

const (
	entryWhole    entryResult = iota // appended as it is
	entryCut                         // appended without its objects
	entryTooLarge                    // not appended: does not fit even cut
)

// appendEntry appends one element of the array for line (whose parsed
// fields are ev, or nil for a line that is not a valid audit event). An
// entry longer than the limit is made again from the event without its
// responseObject (and requestObject if need be); if it is still too long,
// nothing is appended.
func (e *encoder) appendEntry(dst, line []byte, ev *parser.Event, now time.Time) ([]byte, entryResult) {
	mark := len(dst)
	dst = e.appendText(dst, line, ev, now)
	if len(dst)-mark <= e.limit {
		return dst, entryWhole
	}
	dst = dst[:mark]
	if ev == nil {
		return dst, entryTooLarge
	}
	// The raw event's share of the entry: escaping only lengthens it, so
	// aim the cut at the limit minus the entry's fixed parts.
	fixed := len(e.head) + 64
	var cut bool
	e.scratch, cut = outputs.CutObjects(e.scratch[:0], line, ev, e.limit-fixed)
	if cut {
		dst = e.appendText(dst, e.scratch, ev, now)
		if len(dst)-mark <= e.limit {
			return dst, entryCut
		}
		dst = dst[:mark]
		// Escaping made the rest longer than the raw bytes suggested:
		// cut both objects.
		e.scratch, _ = outputs.CutObjects(e.scratch[:0], line, ev, 0)
		dst = e.appendText(dst, e.scratch, ev, now)
		if len(dst)-mark <= e.limit {
			return dst, entryCut
		}
	}
	return dst[:mark], entryTooLarge
}

// appendText appends the entry whose text is raw; the metadata comes from
// ev (nil: severity Info, timestamp now).
func (e *encoder) appendText(dst, raw []byte, ev *parser.Event, now time.Time) []byte {
	ts := now.UnixMilli()
	code := 0
	if ev != nil {
		if ms, ok := timestampMs(ev.StageTimestamp); ok {
			ts = ms
		} else if ms, ok := timestampMs(ev.RequestReceivedTimestamp); ok {
			ts = ms
		}
		code = ev.ResponseCode
	}
	dst = append(dst, e.head...)
	dst = strconv.AppendInt(dst, int64(severityFor(code)), 10)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, `,"text":`...)
	dst = jsonstr.Append(dst, raw)
	return append(dst, '}')
}

// timestampMs converts the body of a JSON string holding an RFC 3339 time
// (as kube-apiserver writes stageTimestamp) to Unix milliseconds, without
// allocating (see parser.ParseTime).
func timestampMs(raw []byte) (int64, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	t, err := parser.ParseTime(raw)
	if err != nil {
		return 0, false
	}
	return t.UnixMilli(), true
}
