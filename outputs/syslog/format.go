package syslog

import (
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
		t, _, ok := parseStamp(stamp)
		if !ok {
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
// kube-apiserver's MicroTime always is; else raw reparsed and written in UTC
// with microseconds; else now.
func appendTimestamp(dst, raw []byte, now time.Time) []byte {
	t, frac, ok := parseStamp(raw)
	if ok && frac <= 6 {
		return append(dst, raw...)
	}
	if !ok {
		t = now
	}
	return t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000Z07:00")
}

// parseStamp parses an RFC 3339 timestamp YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)
// without allocating, checking every field's range as the RFC 5424 grammar
// does. frac is the number of fraction digits.
func parseStamp(b []byte) (t time.Time, frac int, ok bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return t, 0, false
	}
	num := func(s []byte) int {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return -1
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	year, month, day := num(b[0:4]), num(b[5:7]), num(b[8:10])
	hour, minute, sec := num(b[11:13]), num(b[14:16]), num(b[17:19])
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return t, 0, false
	}
	if day > daysIn(year, month) {
		return t, 0, false
	}
	rest := b[19:]
	nsec := 0
	if len(rest) > 0 && rest[0] == '.' {
		i := 1
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			if i <= 9 {
				nsec = nsec*10 + int(rest[i]-'0')
			}
			i++
		}
		frac = i - 1
		if frac == 0 {
			return t, 0, false
		}
		for d := frac; d < 9; d++ {
			nsec *= 10
		}
		rest = rest[i:]
	}
	offset := 0
	switch {
	case len(rest) == 1 && rest[0] == 'Z':
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, om := num(rest[1:3]), num(rest[4:6])
		if oh < 0 || oh > 23 || om < 0 || om > 59 {
			return t, 0, false
		}
		offset = (oh*60 + om) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return t, 0, false
	}
	t = time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC).Add(-time.Duration(offset) * time.Second)
	return t, frac, true
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
