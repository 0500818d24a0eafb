package parser

import (
	"errors"
	"strconv"
)

// Sentinel errors. Every error Scan, SplitEventList and AppendMsgpack return
// for bad input is a *SyntaxError that unwraps to exactly one of these, so
// callers branch with errors.Is and log the *SyntaxError for its offset.
// ParseTime, Event.Check and Event.CheckItem return errors that unwrap to
// ErrTimestamp and ErrNotEvent.
var (
	// ErrSyntax is any JSON syntax error without a more specific sentinel:
	// an illegal escape, a control character in a string, a bad number,
	// a missing comma or colon, or garbage after the object.
	ErrSyntax = errors.New("parser: invalid JSON")
	// ErrNotObject means the line is not a JSON object (for example an array,
	// a string or an empty line).
	ErrNotObject = errors.New("parser: not a JSON object")
	// ErrTruncated means the line ended inside the object: a partly written
	// or cut line.
	ErrTruncated = errors.New("parser: truncated JSON")
	// ErrLegacyFormat means the line was written by kube-apiserver with
	// --audit-log-format=legacy; only --audit-log-format=json is supported.
	ErrLegacyFormat = errors.New("parser: legacy audit log format (set --audit-log-format=json on kube-apiserver)")
	// ErrBOM means the line starts with a UTF-8 byte order mark, which JSON
	// (and encoding/json) does not allow.
	ErrBOM = errors.New("parser: UTF-8 byte order mark before JSON")
	// ErrTooDeep means containers are nested deeper than MaxDepth.
	ErrTooDeep = errors.New("parser: JSON nested too deep")
	// ErrNumberRange means a number is outside the float64 range; only
	// AppendMsgpack returns it (encoding/json rejects such numbers too when it
	// decodes them into a float64).
	ErrNumberRange = errors.New("parser: number out of range")
	// ErrTooLong means the input is longer than the function accepts
	// (AppendMsgpack: 256 MiB).
	ErrTooLong = errors.New("parser: input too long")
	// ErrTimestamp means a timestamp is not an RFC 3339 date-time that
	// ParseTime accepts. ParseTime returns a fixed error wrapping it, never
	// a *SyntaxError, so that it does not allocate even on failure.
	ErrTimestamp = errors.New("parser: invalid timestamp")
	// ErrNotEvent means a valid JSON object is not an audit event: its kind
	// is not "Event" or it has no auditID (for example {}, an EventList or a
	// record of another format). Only Event.Check and Event.CheckItem return
	// it, wrapped in a fixed error that says what is missing.
	ErrNotEvent = errors.New("parser: not an audit event")
)

// fixedError is an error with a fixed message that unwraps to one sentinel.
// Functions that must not allocate even on failure (ParseTime, Event.Check)
// return package-level fixedErrors.
type fixedError struct {
	msg string
	err error
}

func (e *fixedError) Error() string { return e.msg }

// Unwrap returns the sentinel error, for errors.Is.
func (e *fixedError) Unwrap() error { return e.err }

// MaxDepth is the deepest nesting of objects and arrays accepted, counting
// the top-level object as 1. It is encoding/json's limit, so both accept and
// reject the same inputs.
const MaxDepth = 10000

// SyntaxError describes bad input and where it is.
type SyntaxError struct {
	Offset int    // byte offset in the input where the problem was found
	Msg    string // what is wrong, e.g. "invalid escape"
	Err    error  // one of the package's sentinel errors
}

func (e *SyntaxError) Error() string {
	return "parser: " + e.Msg + " at byte " + strconv.Itoa(e.Offset)
}

// Unwrap returns the sentinel error, for errors.Is.
func (e *SyntaxError) Unwrap() error { return e.Err }

// Error codes used inside the scanner. The hot paths return a small code
// instead of an error value; makeError turns it into a *SyntaxError.
const (
	cOK = iota
	cEOF
	cCtrl     // control character in string
	cEscape   // invalid escape
	cChar     // invalid character where a value was expected
	cNumber   // bad number
	cKey      // expected a string key
	cColon    // expected ':'
	cObjEnd   // expected ',' or '}'
	cArrEnd   // expected ',' or ']'
	cDeep     // MaxDepth exceeded
	cNeedDeep // internal: the fast skipper ran out of stack, retry with the big one
	cTrailing // non-whitespace after the object
	cRange    // number out of float64 range
	cNotObj   // top-level value is not an object
)

func makeError(s []byte, off, code int) error {
	e := &SyntaxError{Offset: off, Err: ErrSyntax}
	switch code {
	case cEOF:
		e.Msg, e.Err = "unexpected end of input", ErrTruncated
	case cCtrl:
		e.Msg = "control character " + quoteByte(s, off) + " in string"
	case cEscape:
		e.Msg = "invalid escape"
	case cChar:
		e.Msg = "invalid character " + quoteByte(s, off) + " looking for beginning of value"
	case cNumber:
		e.Msg = "invalid number"
	case cKey:
		e.Msg = "invalid character " + quoteByte(s, off) + " looking for beginning of object key string"
	case cColon:
		e.Msg = "invalid character " + quoteByte(s, off) + " after object key"
	case cObjEnd:
		e.Msg = "invalid character " + quoteByte(s, off) + " after object key:value pair"
	case cArrEnd:
		e.Msg = "invalid character " + quoteByte(s, off) + " after array element"
	case cDeep:
		e.Msg, e.Err = "nesting deeper than "+strconv.Itoa(MaxDepth), ErrTooDeep
	case cTrailing:
		e.Msg = "invalid character " + quoteByte(s, off) + " after top-level value"
	case cRange:
		e.Msg, e.Err = "number out of float64 range", ErrNumberRange
	case cNotObj:
		return notObject(s, off)
	default:
		e.Msg = "internal error (code " + strconv.Itoa(code) + ")"
	}
	return e
}

// notObject explains why the line does not start with '{'. off is the first
// non-whitespace byte.
func notObject(s []byte, off int) error {
	switch {
	case len(s) >= 3 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF:
		return &SyntaxError{Offset: 0, Msg: "UTF-8 byte order mark (EF BB BF), which JSON does not allow,", Err: ErrBOM}
	case isLegacy(s[off:]):
		return &SyntaxError{Offset: off, Msg: "legacy audit log format (kube-apiserver runs with --audit-log-format=legacy; set --audit-log-format=json)", Err: ErrLegacyFormat}
	case off >= len(s):
		return &SyntaxError{Offset: off, Msg: "not a JSON object (empty line)", Err: ErrNotObject}
	}
	return &SyntaxError{Offset: off, Msg: "not a JSON object (found " + quoteByte(s, off) + ")", Err: ErrNotObject}
}

// isLegacy reports whether s looks like a line of kube-apiserver's legacy
// audit format: `2017-09-11T19:55:05.123Z AUDIT: id="..." stage="..." ...`.
func isLegacy(s []byte) bool {
	if len(s) < 20 || s[0] < '0' || s[0] > '9' {
		return false
	}
	if len(s) > 64 {
		s = s[:64]
	}
	for i := 0; i+8 <= len(s); i++ {
		if string(s[i:i+8]) == " AUDIT: " {
			return true
		}
	}
	return false
}

func quoteByte(s []byte, off int) string {
	if off >= len(s) {
		return "EOF"
	}
	c := s[off]
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	const hex = "0123456789abcdef"
	return "0x" + string(hex[c>>4]) + string(hex[c&15])
}
