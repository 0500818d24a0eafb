package logdna

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf8"

	"github.com/audittail/audittail/outputs"
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

// appendRawString appends the JSON string whose body (between the quotes,
// escapes not decoded) is raw. Plain printable ASCII is copied as it is;
// anything else is decoded with parser.Unquote and escaped again, so that
// invalid UTF-8 becomes U+FFFD as encoding/json would decode it.
func (e *encoder) appendRawString(dst, raw []byte) []byte {
	if !needsEscape(raw) {
		dst = append(dst, '"')
		dst = append(dst, raw...)
		return append(dst, '"')
	}
	var err error
	e.unq, err = parser.Unquote(e.unq[:0], raw)
	if err != nil {
		// Scan validated the line, so this does not happen; send the
		// value escaped as it is rather than fail the event.
		return appendString(dst, raw)
	}
	return appendString(dst, e.unq)
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// specialMask has the high bit set in each byte of w that is '"', '\\', a
// control character or not ASCII (exactly for the lowest such byte; bytes
// after it may be flagged falsely).
func specialMask(w uint64) uint64 {
	q := w ^ (lsb * '"')
	b := w ^ (lsb * '\\')
	return (((q - lsb) &^ q) | ((b - lsb) &^ b) | ((w - lsb*0x20) &^ w) | w) & msb
}

// nextSpecial returns the index of the first byte of s that needs escaping
// in a JSON string, or len(s).
func nextSpecial(s []byte, i int) int {
	for ; i+8 <= len(s); i += 8 {
		if m := specialMask(binary.LittleEndian.Uint64(s[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return i
		}
	}
	return len(s)
}

func needsEscape(s []byte) bool { return nextSpecial(s, 0) < len(s) }

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string: '"' and '\\' escaped, control
// characters as \n, \r, \t or \u00XX, and each byte of invalid UTF-8 as
// \ufffd (what encoding/json does). Valid UTF-8 is copied unchanged.
func appendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	i := 0
	for {
		j := nextSpecial(s, i)
		dst = append(dst, s[i:j]...)
		if j == len(s) {
			break
		}
		c := s[j]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
			i = j + 1
		case c == '\n':
			dst = append(dst, '\\', 'n')
			i = j + 1
		case c == '\r':
			dst = append(dst, '\\', 'r')
			i = j + 1
		case c == '\t':
			dst = append(dst, '\\', 't')
			i = j + 1
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			i = j + 1
		default:
			r, size := utf8.DecodeRune(s[j:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, `\ufffd`...)
			} else {
				dst = append(dst, s[j:j+size]...)
			}
			i = j + size
		}
	}
	return append(dst, '"')
}

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
