package otlp

import (
	"bytes"
	"math"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/audittail/audittail/parser"
)

// Field numbers of opentelemetry/proto/logs/v1/logs.proto and
// common/v1/common.proto (OTLP 1.x), which this file encodes by hand.
const (
	fRequestResourceLogs = 1 // ExportLogsServiceRequest.resource_logs

	fResourceLogsResource  = 1 // ResourceLogs.resource
	fResourceLogsScopeLogs = 2 // ResourceLogs.scope_logs
	fResourceAttributes    = 1 // Resource.attributes

	fScopeLogsScope   = 1 // ScopeLogs.scope
	fScopeLogsRecords = 2 // ScopeLogs.log_records
	fScopeName        = 1 // InstrumentationScope.name
	fScopeVersion     = 2 // InstrumentationScope.version

	fRecordTime           = 1  // LogRecord.time_unix_nano, fixed64
	fRecordSeverityNumber = 2  // LogRecord.severity_number, enum
	fRecordSeverityText   = 3  // LogRecord.severity_text
	fRecordBody           = 5  // LogRecord.body, AnyValue
	fRecordAttributes     = 6  // LogRecord.attributes
	fRecordObservedTime   = 11 // LogRecord.observed_time_unix_nano, fixed64

	fKeyValueKey   = 1
	fKeyValueValue = 2

	fAnyString = 1
	fAnyBool   = 2
	fAnyInt    = 3
	fAnyDouble = 4
	fAnyArray  = 5
	fAnyKVList = 6

	fArrayValues  = 1 // ArrayValue.values
	fKVListValues = 1 // KeyValueList.values

	fResponsePartialSuccess = 1 // ExportLogsServiceResponse.partial_success
	fPartialRejected        = 1 // ExportLogsPartialSuccess.rejected_log_records
	fPartialMessage         = 2 // ExportLogsPartialSuccess.error_message
)

// Severity numbers (logs.proto SeverityNumber).
const (
	sevInfo  = 9
	sevWarn  = 13
	sevError = 17
)

// A nested message is written as its tag, a length reserved at its widest
// (5 bytes: up to 4 GiB), then its content; end shifts the content back
// over the unused length bytes. One memmove per message instead of a
// second pass computing sizes.
const lenReserve = 5

// appendTag appends a field key. Every field number here is under 16, so
// a key is one byte: inlined, where protowire.AppendTag is a call.
func appendTag(b []byte, num protowire.Number, t protowire.Type) []byte {
	return append(b, byte(num)<<3|byte(t))
}

// appendVarint is protowire.AppendVarint with the one-byte case (tags,
// short strings' lengths) inlined.
func appendVarint(b []byte, v uint64) []byte {
	if v < 1<<7 {
		return append(b, byte(v))
	}
	return protowire.AppendVarint(b, v)
}

func appendBytes(b, v []byte) []byte { return append(appendVarint(b, uint64(len(v))), v...) }

func appendString(b []byte, v string) []byte {
	return append(appendVarint(b, uint64(len(v))), v...)
}

func begin(b *[]byte, num protowire.Number) int {
	*b = appendTag(*b, num, protowire.BytesType)
	*b = append(*b, 0, 0, 0, 0, 0)
	return len(*b)
}

func end(b *[]byte, start int) {
	n := len(*b) - start
	var l [lenReserve]byte
	ln := appendVarint(l[:0], uint64(n))
	hdr := start - lenReserve
	copy((*b)[hdr+len(ln):], (*b)[start:])
	copy((*b)[hdr:], ln)
	*b = (*b)[:hdr+len(ln)+n]
}

func appendStringField(b []byte, num protowire.Number, s []byte) []byte {
	b = appendTag(b, num, protowire.BytesType)
	return appendBytes(b, s)
}

// appendKV appends a KeyValue with a string value, its lengths computed
// (no shift).
func appendKV(b []byte, num protowire.Number, key string, val []byte) []byte {
	any := 1 + protowire.SizeBytes(len(val))                               // AnyValue{string_value}
	kv := 1 + protowire.SizeBytes(len(key)) + 1 + protowire.SizeBytes(any) // KeyValue{key, value}
	b = appendTag(b, num, protowire.BytesType)
	b = appendVarint(b, uint64(kv))
	b = appendTag(b, fKeyValueKey, protowire.BytesType)
	b = appendString(b, key)
	b = appendTag(b, fKeyValueValue, protowire.BytesType)
	b = appendVarint(b, uint64(any))
	return appendStringField(b, fAnyString, val)
}

// appendKVInt appends a KeyValue with an int value.
func appendKVInt(b []byte, num protowire.Number, key string, val int64) []byte {
	kv := begin(&b, num)
	b = appendStringField(b, fKeyValueKey, []byte(key))
	v := begin(&b, fKeyValueValue)
	b = appendTag(b, fAnyInt, protowire.VarintType)
	b = appendVarint(b, uint64(val))
	end(&b, v)
	end(&b, kv)
	return b
}

// encoder turns audit events into OTLP LogRecords.
type encoder struct {
	mapBody bool
	scratch []byte // unescaped strings
	key     []byte // attribute names built from annotation keys
}

// str returns the decoded value of the raw JSON string body raw (escapes
// resolved), in e.scratch when it had any.
func (e *encoder) str(raw []byte) []byte {
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw
	}
	d, err := parser.Unquote(e.scratch[:0], raw)
	if err != nil {
		return raw
	}
	e.scratch = d
	return d
}

// appendStrAttr appends a string attribute if raw is present.
func (e *encoder) appendStrAttr(b []byte, key string, raw []byte) []byte {
	if raw == nil {
		return b
	}
	return appendKV(b, fRecordAttributes, key, e.str(raw))
}

// appendRecord appends one LogRecord (field log_records of ScopeLogs) for
// line, whose parsed event is ev (nil: not a valid event; it goes as its
// text, stamped now).
func (e *encoder) appendRecord(b []byte, line []byte, ev *parser.Event, now time.Time) []byte {
	rec := begin(&b, fScopeLogsRecords)
	ts := now
	if ev != nil && ev.StageTimestamp != nil {
		if t, err := parser.ParseTime(ev.StageTimestamp); err == nil {
			ts = t
		}
	}
	b = appendTag(b, fRecordTime, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, uint64(ts.UnixNano()))
	b = appendTag(b, fRecordObservedTime, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, uint64(now.UnixNano()))
	sev, text := severity(ev)
	b = appendTag(b, fRecordSeverityNumber, protowire.VarintType)
	b = appendVarint(b, sev)
	b = appendStringField(b, fRecordSeverityText, []byte(text))

	if e.mapBody && ev != nil {
		body := begin(&b, fRecordBody)
		mark := len(b)
		var ok bool
		if b, ok = e.appendJSONValue(b, line); !ok {
			b = appendStringField(b[:mark], fAnyString, line)
		}
		end(&b, body)
	} else {
		// AnyValue{string_value: line}, its length known: no shift.
		b = appendTag(b, fRecordBody, protowire.BytesType)
		b = appendVarint(b, uint64(1+protowire.SizeBytes(len(line))))
		b = appendStringField(b, fAnyString, line)
	}

	if ev != nil {
		b = e.appendAttributes(b, ev)
	}
	end(&b, rec)
	return b
}

func severity(ev *parser.Event) (uint64, string) {
	switch {
	case ev == nil:
		return sevInfo, "INFO"
	case ev.ResponseCode >= 500:
		return sevError, "ERROR"
	case ev.ResponseCode >= 400:
		return sevWarn, "WARN"
	}
	return sevInfo, "INFO"
}

// appendAttributes appends the event's attributes, named as OpenShift's
// logging names them for audit logs.
func (e *encoder) appendAttributes(b []byte, ev *parser.Event) []byte {
	b = e.appendStrAttr(b, "k8s.audit.event.id", ev.AuditID)
	b = e.appendStrAttr(b, "k8s.audit.event.level", ev.Level)
	b = e.appendStrAttr(b, "k8s.audit.event.stage", ev.Stage)
	b = e.appendStrAttr(b, "k8s.audit.event.verb", ev.Verb)
	b = e.appendStrAttr(b, "k8s.audit.event.user_agent", ev.UserAgent)
	b = e.appendStrAttr(b, "k8s.audit.event.request.uri", ev.RequestURI)
	if ev.ResponseCode != 0 {
		b = appendKVInt(b, fRecordAttributes, "k8s.audit.event.response.code", int64(ev.ResponseCode))
	}
	r := &ev.ObjectRef
	b = e.appendStrAttr(b, "k8s.audit.event.object_ref.resource", r.Resource)
	b = e.appendStrAttr(b, "k8s.audit.event.object_ref.subresource", r.Subresource)
	b = e.appendStrAttr(b, "k8s.audit.event.object_ref.name", r.Name)
	b = e.appendStrAttr(b, "k8s.audit.event.object_ref.namespace", r.Namespace)
	b = e.appendStrAttr(b, "k8s.audit.event.object_ref.api_group", r.APIGroup)
	b = e.appendStrAttr(b, "k8s.audit.event.object_ref.api_version", r.APIVersion)
	b = e.appendStrAttr(b, "k8s.user.username", ev.Username)
	if ev.UserGroups != nil {
		mark := len(b)
		kv := begin(&b, fRecordAttributes)
		b = appendStringField(b, fKeyValueKey, []byte("k8s.user.groups"))
		v := begin(&b, fKeyValueValue)
		var ok bool
		if b, ok = e.appendJSONValue(b, ev.UserGroups); ok {
			end(&b, v)
			end(&b, kv)
		} else {
			b = b[:mark]
		}
	}
	if ev.Annotations != nil {
		mark := len(b)
		var ok bool
		if b, ok = e.appendAnnotations(b, ev.Annotations); !ok {
			b = b[:mark]
		}
	}
	return b
}

// appendAnnotations appends k8s.audit.event.annotation.<key> for each
// member of the raw annotations object.
func (e *encoder) appendAnnotations(b []byte, obj []byte) ([]byte, bool) {
	w := walker{s: obj}
	if !w.consume('{') {
		return b, false
	}
	if w.consume('}') {
		return b, true
	}
	for {
		k, ok := w.str()
		if !ok || !w.consume(':') {
			return b, false
		}
		e.key = append(append(e.key[:0], "k8s.audit.event.annotation."...), e.str(k)...)
		kv := begin(&b, fRecordAttributes)
		b = appendStringField(b, fKeyValueKey, e.key)
		v := begin(&b, fKeyValueValue)
		if b, ok = e.appendValue(b, &w); !ok {
			return b, false
		}
		end(&b, v)
		end(&b, kv)
		if w.consume('}') {
			return b, true
		}
		if !w.consume(',') {
			return b, false
		}
	}
}

// appendJSONValue appends the AnyValue content (no tag: the caller has
// opened the AnyValue message) of the JSON value raw.
func (e *encoder) appendJSONValue(b []byte, raw []byte) ([]byte, bool) {
	w := walker{s: raw}
	b, ok := e.appendValue(b, &w)
	w.ws()
	return b, ok && w.i == len(w.s)
}

// appendValue appends the AnyValue fields of the JSON value at w: an
// object becomes a kvlist_value, an array an array_value, a string a
// string_value, an integer that fits an int_value, another number a
// double_value, true/false a bool_value, null nothing (an empty AnyValue).
func (e *encoder) appendValue(b []byte, w *walker) ([]byte, bool) {
	w.ws()
	if w.i >= len(w.s) {
		return b, false
	}
	switch c := w.s[w.i]; {
	case c == '{':
		w.i++
		l := begin(&b, fAnyKVList)
		if w.consume('}') {
			end(&b, l)
			return b, true
		}
		for {
			k, ok := w.str()
			if !ok || !w.consume(':') {
				return b, false
			}
			kv := begin(&b, fKVListValues)
			b = appendStringField(b, fKeyValueKey, e.str(k))
			v := begin(&b, fKeyValueValue)
			if b, ok = e.appendValue(b, w); !ok {
				return b, false
			}
			end(&b, v)
			end(&b, kv)
			if w.consume('}') {
				end(&b, l)
				return b, true
			}
			if !w.consume(',') {
				return b, false
			}
		}
	case c == '[':
		w.i++
		a := begin(&b, fAnyArray)
		if w.consume(']') {
			end(&b, a)
			return b, true
		}
		for {
			v := begin(&b, fArrayValues)
			var ok bool
			if b, ok = e.appendValue(b, w); !ok {
				return b, false
			}
			end(&b, v)
			if w.consume(']') {
				end(&b, a)
				return b, true
			}
			if !w.consume(',') {
				return b, false
			}
		}
	case c == '"':
		s, ok := w.str()
		if !ok {
			return b, false
		}
		return appendStringField(b, fAnyString, e.str(s)), true
	case c == 't' || c == 'f':
		lit := "false"
		if c == 't' {
			lit = "true"
		}
		if !bytes.HasPrefix(w.s[w.i:], []byte(lit)) {
			return b, false
		}
		w.i += len(lit)
		b = appendTag(b, fAnyBool, protowire.VarintType)
		return appendVarint(b, protowire.EncodeBool(c == 't')), true
	case c == 'n':
		if !bytes.HasPrefix(w.s[w.i:], []byte("null")) {
			return b, false
		}
		w.i += 4
		return b, true
	default:
		j := w.i
		for j < len(w.s) && bytes.IndexByte([]byte("+-0123456789.eE"), w.s[j]) >= 0 {
			j++
		}
		num := w.s[w.i:j]
		w.i = j
		if len(num) == 0 {
			return b, false
		}
		if !bytes.ContainsAny(num, ".eE") {
			if n, err := strconv.ParseInt(string(num), 10, 64); err == nil {
				b = appendTag(b, fAnyInt, protowire.VarintType)
				return appendVarint(b, uint64(n)), true
			}
		}
		f, err := strconv.ParseFloat(string(num), 64)
		if err != nil {
			return b, false
		}
		b = appendTag(b, fAnyDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(f)), true
	}
}

// walker reads JSON that the parser has validated.
type walker struct {
	s []byte
	i int
}

func (w *walker) ws() {
	for w.i < len(w.s) {
		switch w.s[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

func (w *walker) consume(c byte) bool {
	w.ws()
	if w.i < len(w.s) && w.s[w.i] == c {
		w.i++
		return true
	}
	return false
}

// str reads a string and returns its raw body (escapes not resolved).
func (w *walker) str() ([]byte, bool) {
	if !w.consume('"') {
		return nil, false
	}
	start := w.i
	for {
		j := bytes.IndexByte(w.s[w.i:], '"')
		if j < 0 {
			w.i = len(w.s)
			return nil, false
		}
		w.i += j + 1
		// The quote ends the string unless an odd number of
		// backslashes escapes it.
		n := 0
		for k := w.i - 2; k >= start && w.s[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return w.s[start : w.i-1], true
		}
	}
}

// header is the encoded start of a request, up to its first record: the
// resource and the scope, whose enclosing lengths (ResourceLogs, ScopeLogs)
// depend on the records and are written in front of them once they are
// known (see finish), so that the records are never moved.
type header struct {
	resource []byte // Resource message content
	scope    []byte // InstrumentationScope message content
}

func newHeader(resourceAttrs [][2]string, version string) header {
	var h header
	for _, kv := range resourceAttrs {
		h.resource = appendKV(h.resource, fResourceAttributes, kv[0], []byte(kv[1]))
	}
	h.scope = appendStringField(h.scope, fScopeName, []byte("audittail"))
	h.scope = appendStringField(h.scope, fScopeVersion, []byte(version))
	return h
}

// reserve is the room start leaves before the records: the header and
// the two lengths at their widest.
func (h header) reserve() int {
	return 2*(1+binaryMaxVarint) + 1 + protowire.SizeBytes(len(h.resource)) + 1 + protowire.SizeBytes(len(h.scope))
}

const binaryMaxVarint = 10

// start returns b with room for the header; records are appended after.
func (h header) start(b []byte) []byte {
	return append(b[:0], make([]byte, h.reserve())...)
}

// finish writes the header right before the records (b[h.reserve():])
// and returns the request: a sub-slice of b.
func (h header) finish(b []byte) []byte {
	records := len(b) - h.reserve()
	sl := 1 + protowire.SizeBytes(len(h.scope)) + records                                      // ScopeLogs content
	rl := 1 + protowire.SizeBytes(len(h.resource)) + 1 + protowire.SizeVarint(uint64(sl)) + sl // ResourceLogs content
	var hdr []byte
	hdr = appendTag(hdr, fRequestResourceLogs, protowire.BytesType)
	hdr = appendVarint(hdr, uint64(rl))
	hdr = appendTag(hdr, fResourceLogsResource, protowire.BytesType)
	hdr = appendBytes(hdr, h.resource)
	hdr = appendTag(hdr, fResourceLogsScopeLogs, protowire.BytesType)
	hdr = appendVarint(hdr, uint64(sl))
	hdr = appendTag(hdr, fScopeLogsScope, protowire.BytesType)
	hdr = appendBytes(hdr, h.scope)
	off := h.reserve() - len(hdr)
	copy(b[off:], hdr)
	return b[off:]
}

// partialSuccess decodes an ExportLogsServiceResponse.
func partialSuccess(body []byte) (rejected int64, msg string, err error) {
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return 0, "", protowire.ParseError(n)
		}
		body = body[n:]
		if num == fResponsePartialSuccess && typ == protowire.BytesType {
			ps, n := protowire.ConsumeBytes(body)
			if n < 0 {
				return 0, "", protowire.ParseError(n)
			}
			body = body[n:]
			for len(ps) > 0 {
				num, typ, n := protowire.ConsumeTag(ps)
				if n < 0 {
					return 0, "", protowire.ParseError(n)
				}
				ps = ps[n:]
				switch {
				case num == fPartialRejected && typ == protowire.VarintType:
					v, n := protowire.ConsumeVarint(ps)
					if n < 0 {
						return 0, "", protowire.ParseError(n)
					}
					rejected, ps = int64(v), ps[n:]
				case num == fPartialMessage && typ == protowire.BytesType:
					v, n := protowire.ConsumeBytes(ps)
					if n < 0 {
						return 0, "", protowire.ParseError(n)
					}
					msg, ps = string(v), ps[n:]
				default:
					n := protowire.ConsumeFieldValue(num, typ, ps)
					if n < 0 {
						return 0, "", protowire.ParseError(n)
					}
					ps = ps[n:]
				}
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, body)
		if n < 0 {
			return 0, "", protowire.ParseError(n)
		}
		body = body[n:]
	}
	return rejected, msg, nil
}
