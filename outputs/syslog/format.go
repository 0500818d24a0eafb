package syslog

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/audittail/audittail/parser"
)

// Severities (RFC 5424 6.2.1) chosen from responseStatus.code.
const (
	sevErr     = 3 // 5xx: the API server failed the request
	sevWarning = 4 // 4xx: denied or invalid (403s are what a SIEM hunts for)
	sevInfo    = 6 // everything else, and events without a code
)

// severity maps a response code to a syslog severity.
func severity(code int) int {
	switch {
	case code >= 500 && code < 600:
		return sevErr
	case code >= 400 && code < 500:
		return sevWarning
	}
	return sevInfo
}

// bom starts an RFC 5424 MSG that is UTF-8 (6.4).
var bom = []byte{0xEF, 0xBB, 0xBF}

// encoder writes syslog messages. It is not safe for concurrent use: its
// scratch buffers are reused from message to message.
type encoder struct {
	rfc3164  bool
	facility int
	hostname string
	appName  string
	sdID     string

	scratch []byte // decoded SD-PARAM values
}

// appendMessage appends the syslog message (without framing) that carries
// line to dst. ev holds line's fields, or is nil for a line that is not a
// valid event (the message then has no structured data). msg is what goes
// into MSG: line itself, or line with its objects cut out.
func (e *encoder) appendMessage(dst, msg []byte, ev *parser.Event, now time.Time) []byte {
	code := 0
	var stamp []byte
	if ev != nil {
		code, stamp = ev.ResponseCode, ev.StageTimestamp
	}
	dst = append(dst, '<')
	dst = strconv.AppendInt(dst, int64(e.facility*8+severity(code)), 10)
	dst = append(dst, '>')
	if e.rfc3164 {
		// <PRI>Mmm dd hh:mm:ss HOSTNAME TAG: MSG
		t, err := parser.ParseTime(stamp)
		if err != nil {
			t = now
		}
		dst = t.Local().AppendFormat(dst, time.Stamp)
		dst = append(dst, ' ')
		dst = append(dst, e.hostname...)
		dst = append(dst, ' ')
		dst = append(dst, e.appName...)
		dst = append(dst, ": "...)
		return append(dst, msg...)
	}
	// <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [BOM]MSG
	dst = append(dst, "1 "...)
	dst = appendTimestamp(dst, stamp, now)
	dst = append(dst, ' ')
	dst = append(dst, e.hostname...)
	dst = append(dst, ' ')
	dst = append(dst, e.appName...)
	dst = append(dst, " - audit "...)
	dst = e.appendSD(dst, ev)
	dst = append(dst, ' ')
	if utf8.Valid(msg) {
		dst = append(dst, bom...)
	}
	return append(dst, msg...)
}

// appendSD appends the STRUCTURED-DATA of ev, or "-" when ev is nil.
func (e *encoder) appendSD(dst []byte, ev *parser.Event) []byte {
	if ev == nil {
		return append(dst, '-')
	}
	dst = append(dst, '[')
	dst = append(dst, e.sdID...)
	dst = e.appendParam(dst, "auditID", ev.AuditID, nil)
	dst = e.appendParam(dst, "stage", ev.Stage, nil)
	dst = e.appendParam(dst, "verb", ev.Verb, nil)
	dst = e.appendParam(dst, "user", ev.Username, nil)
	dst = e.appendParam(dst, "resource", ev.ObjectRef.Resource, ev.ObjectRef.Subresource)
	dst = e.appendParam(dst, "namespace", ev.ObjectRef.Namespace, nil)
	if ev.ResponseCode != 0 {
		dst = append(dst, ` code="`...)
		dst = strconv.AppendInt(dst, int64(ev.ResponseCode), 10)
		dst = append(dst, '"')
	}
	return append(dst, ']')
}

// appendParam appends ` name="value"` with value, a raw JSON string,
// decoded and escaped as a PARAM-VALUE. A non-empty sub is appended to the
// value after a '/' (resource "pods/exec"). A nil raw adds nothing.
func (e *encoder) appendParam(dst []byte, name string, raw, sub []byte) []byte {
	if raw == nil {
		return dst
	}
	var err error
	e.scratch, err = parser.Unquote(e.scratch[:0], raw)
	if err != nil {
		return dst
	}
	if len(sub) > 0 {
		e.scratch = append(e.scratch, '/')
		if e.scratch, err = parser.Unquote(e.scratch, sub); err != nil {
			return dst
		}
	}
	dst = append(dst, ' ')
	dst = append(dst, name...)
	dst = append(dst, `="`...)
	dst = appendEscaped(dst, e.scratch)
	return append(dst, '"')
}

// appendEscaped appends v with '"', '\' and ']' escaped by a backslash
// (RFC 5424 6.3.3), and control characters (a decoded "\n" in a namespace
// taken from a request URL) replaced by '?', so that no value can end a
// message early or forge one under LF framing.
func appendEscaped(dst, v []byte) []byte {
	for _, c := range v {
		switch {
		case c == '"' || c == '\\' || c == ']':
			dst = append(dst, '\\', c)
		case c < 0x20 || c == 0x7f:
			dst = append(dst, '?')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// appendTimestamp appends an RFC 5424 TIMESTAMP: raw (a stageTimestamp
// between its quotes) as it is when it already is one, which
// kube-apiserver's MicroTime always is; else raw parsed by
// parser.ParseTime and written in UTC with microseconds; else now.
func appendTimestamp(dst, raw []byte, now time.Time) []byte {
	t, err := parser.ParseTime(raw)
	if err == nil && isRFC5424Timestamp(raw) {
		return append(dst, raw...)
	}
	if err != nil {
		t = now
	}
	return t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000Z07:00")
}

// isRFC5424Timestamp reports whether raw, which parser.ParseTime accepts,
// is also an RFC 5424 TIMESTAMP as it is: no JSON escape, at most 6
// fraction digits (TIME-SECFRAC), an offset of at most 23:59 (ParseTime,
// like time.Parse, takes up to 24:60).
func isRFC5424Timestamp(raw []byte) bool {
	if bytes.IndexByte(raw, '\\') >= 0 {
		return false
	}
	tail := raw[len("2006-01-02T15:04:05"):]
	if tail[0] == '.' {
		n := 1
		for n < len(tail) && tail[n] >= '0' && tail[n] <= '9' {
			n++
		}
		if n-1 > 6 {
			return false
		}
		tail = tail[n:]
	}
	switch len(tail) {
	case 1:
		return tail[0] == 'Z'
	case 6:
		return (tail[0] == '+' || tail[0] == '-') && string(tail[1:3]) <= "23" && tail[3] == ':' && string(tail[4:6]) <= "59"
	}
	return false
}
