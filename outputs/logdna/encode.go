package logdna

import (
	"strconv"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/internal/jsonstr"
	"github.com/audittail/audittail/parser"
)

// TruncatedAnnotation marks an event sent without its objects.
const TruncatedAnnotation = outputs.TruncatedAnnotation

// encoder builds request bodies by hand into reused buffers: no
// encoding/json and no allocation per event once the buffers have grown.
type encoder struct {
	app       []byte // "app":"…" member, escaped once
	lineLimit int
	scratch   []byte // a cut-down event
	unq       []byte // a decoded meta value
}

// levelFor maps an audit event's response code to a LogDNA level.
func levelFor(code int) string {
	switch {
	case code >= 500 && code <= 599:
		return "ERROR"
	case code >= 400 && code <= 499:
		return "WARN"
	}
	return "INFO"
}

// appendEntry appends one element of the "lines" array for line (whose
// parsed fields are ev, or nil for a line that is not a valid audit event).
// It reports whether the event had to be cut to fit the line limit, and
// ok=false when it does not fit even then (nothing is appended).
func (e *encoder) appendEntry(dst, line []byte, ev *parser.Event, nowMs int64) (out []byte, cut, ok bool) {
	raw := line
	if len(raw) > e.lineLimit {
		if ev == nil {
			return dst, false, false
		}
		e.scratch, _ = outputs.CutObjects(e.scratch[:0], line, ev, e.lineLimit)
		if len(e.scratch) > e.lineLimit {
			return dst, false, false
		}
		raw, cut = e.scratch, true
	}
	ts := nowMs
	code := 0
	if ev != nil {
		if ms, ok := timestampMs(ev.StageTimestamp); ok {
			ts = ms
		} else if ms, ok := timestampMs(ev.RequestReceivedTimestamp); ok {
			ts = ms
		}
		code = ev.ResponseCode
	}
	dst = append(dst, `{"timestamp":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, `,"line":`...)
	dst = appendString(dst, raw)
	dst = append(dst, e.app...)
	dst = append(dst, `,"level":"`...)
	dst = append(dst, levelFor(code)...)
	dst = append(dst, '"')
	if ev != nil {
		dst = append(dst, `,"meta":{`...)
		first := true
		dst, first = e.appendMeta(dst, first, `"auditID":`, ev.AuditID)
		dst, first = e.appendMeta(dst, first, `"verb":`, ev.Verb)
		dst, first = e.appendMeta(dst, first, `"user":`, ev.Username)
		dst, first = e.appendMeta(dst, first, `"resource":`, ev.ObjectRef.Resource)
		dst, first = e.appendMeta(dst, first, `"namespace":`, ev.ObjectRef.Namespace)
		if code != 0 {
			if !first {
				dst = append(dst, ',')
			}
			dst = append(dst, `"code":`...)
			dst = strconv.AppendInt(dst, int64(code), 10)
			first = false
		}
		dst, _ = e.appendMeta(dst, first, `"stage":`, ev.Stage)
		dst = append(dst, '}')
	}
	dst = append(dst, '}')
	return dst, cut, true
}

// appendMeta appends `key:"value"` for a string field the event has (raw is
// its JSON string body, escapes not decoded).
func (e *encoder) appendMeta(dst []byte, first bool, key string, raw []byte) ([]byte, bool) {
	if raw == nil {
		return dst, first
	}
	if !first {
		dst = append(dst, ',')
	}
	dst = append(dst, key...)
	dst = e.appendRawString(dst, raw)
	return dst, false
}

// appendRawString appends the JSON string whose body is raw (see
// jsonstr.AppendRaw).
func (e *encoder) appendRawString(dst, raw []byte) []byte {
	return jsonstr.AppendRaw(dst, raw, &e.unq)
}

// appendString appends s as a JSON string (see jsonstr.Append).
func appendString(dst, s []byte) []byte { return jsonstr.Append(dst, s) }

// timestampMs converts the body of a JSON string holding an RFC 3339 time
// (as kube-apiserver writes stageTimestamp: 2026-11-23T10:54:44.671393Z) to
// Unix milliseconds, without allocating (see parser.ParseTime).
func timestampMs(raw []byte) (int64, bool) {
	t, err := parser.ParseTime(raw)
	if err != nil {
		return 0, false
	}
	return t.UnixMilli(), true
}
