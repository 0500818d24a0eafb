package elasticsearch

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/internal/jsonstr"
	"github.com/audittail/audittail/parser"
)

// The layout of a document, as Elastic's kubernetes.audit_logs integration
// (Elastic Agent's filestream stream plus the data stream's ingest
// pipeline) writes it, so that its dashboards and detection rules find
// the fields:
//
//	{"@timestamp":"<stageTimestamp>",
//	 "event":{"kind":"event","action":"<verb>","outcome":"success|failure|unknown"},
//	 "user":{"name":"<user.username>","id":"<user.uid>"},
//	 "user_agent":{"original":"<userAgent>"},
//	 "source":{"ip":["<sourceIPs>",…]},
//	 "kubernetes":{"audit":{<the event>}}}
//
// The event under kubernetes.audit is the line as read, with two changes
// the integration makes too: the annotations' keys have their dots
// replaced by underscores (authorization.k8s.io/decision becomes
// authorization_k8s_io/decision: Elasticsearch reads a dot in a field
// name as a path, so "a.b" and "a.b.c" would collide), and the metadata
// of requestObject and responseObject is removed unless object_metadata
// is keep (labels such as app and app.kubernetes.io/name collide the same
// way, and managedFields would explode the mapping). A field the event
// lacks is left out of the document.

// encoder builds bulk request bodies into reused buffers: no
// encoding/json and no allocation per event once the buffers have grown.
type encoder struct {
	keepMetadata bool
	limit        int    // the longest document kept whole
	cut          []byte // the line without its objects
	doc          []byte // the rewritten event
	unq          []byte
}

// docResult says how appendDoc fared.
type docResult uint8

const (
	docOK       docResult = iota
	docCut                // the objects were cut to fit limit
	docTooLarge           // does not fit even without its objects
)

// appendAction appends the bulk action line of one document:
// {"create":{"_id":"<auditID>-<stage>-<hash>"}}, hash the first 8 bytes of
// the line's SHA-256 in hex. The same line sent again has the same _id
// (answered 409: stored once); two different events that share an
// auditID and stage do not: kube-apiserver takes the auditID from a
// client's Audit-ID header as it is, and aggregated API servers log the
// same auditID, so auditID-stage alone would let a client hide a request
// behind an earlier one and lose one event of each such pair.
func (e *encoder) appendAction(dst, line []byte, ev *parser.Event) []byte {
	sum := sha256.Sum256(line)
	dst = append(dst, `{"create":{"_id":`...)
	if ev != nil && len(ev.AuditID) > 0 {
		e.unq = append(e.unq[:0], ev.AuditID...)
		if ev.Escaped&parser.EscapedOther != 0 {
			e.unq, _ = parser.Unquote(e.unq[:0], ev.AuditID)
		}
		if len(e.unq) > maxIDPart {
			// Elasticsearch refuses an _id over 512 bytes, and for the
			// whole request: a long Audit-ID header is hashed.
			h := sha256.Sum256(e.unq)
			e.unq = hex.AppendEncode(append(e.unq[:0], "auditid-sha256-"...), h[:16])
		}
		e.unq = append(e.unq, '-')
		stage := ev.Stage
		if ev.Escaped&parser.EscapedOther != 0 {
			if s, err := parser.Unquote(nil, ev.Stage); err == nil {
				stage = s
			}
		}
		if len(stage) > 64 {
			stage = stage[:64]
		}
		e.unq = append(e.unq, stage...)
		e.unq = append(e.unq, '-')
		e.unq = hex.AppendEncode(e.unq, sum[:8])
		dst = appendString(dst, e.unq)
	} else {
		// Not an audit event, or one without an auditID: an _id from
		// its bytes alone.
		dst = append(dst, `"line-`...)
		dst = hex.AppendEncode(dst, sum[:16])
		dst = append(dst, '"')
	}
	return append(dst, "}}\n"...)
}

// maxIDPart is the longest auditID used as it is in an _id.
const maxIDPart = 256

// appendDoc appends the document of line (parsed as ev, nil when the line
// is not a valid audit event) and a newline.
func (e *encoder) appendDoc(dst, line []byte, ev *parser.Event, now time.Time) ([]byte, docResult) {
	if ev == nil {
		// Kept, searchable, and marked, like a line the integration
		// could not decode.
		dst = append(dst, `{"@timestamp":"`...)
		dst = now.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, `","event":{"kind":"pipeline_error"},"error":{"message":"not an audit.k8s.io Event"},"message":`...)
		dst = appendString(dst, line)
		return append(dst, "}\n"...), docOK
	}
	res := docOK
	if len(line) > e.limit && len(e.rewriteLen(line, ev)) > e.limit {
		// Too long even without the objects' metadata: cut the objects.
		var cut bool
		e.cut, cut = outputs.CutObjects(e.cut[:0], line, ev, e.limit)
		if !cut || len(e.cut) > e.limit {
			return dst, docTooLarge
		}
		// Parse the cut line again: its spans moved.
		var cev parser.Event
		if err := parser.Scan(e.cut, &cev); err != nil {
			return dst, docTooLarge
		}
		return e.appendEvent(dst, e.cut, &cev, now, docCut)
	}
	return e.appendEvent(dst, line, ev, now, res)
}

// rewriteLen returns the rewritten event (its length is what counts).
func (e *encoder) rewriteLen(line []byte, ev *parser.Event) []byte {
	e.rewrite(line, ev)
	return e.doc
}

func (e *encoder) appendEvent(dst, line []byte, ev *parser.Event, now time.Time, res docResult) ([]byte, docResult) {
	decision := e.rewrite(line, ev)

	dst = append(dst, `{"@timestamp":`...)
	switch {
	case validTime(ev.StageTimestamp):
		dst = appendQuoted(dst, ev.StageTimestamp)
	case validTime(ev.RequestReceivedTimestamp):
		dst = appendQuoted(dst, ev.RequestReceivedTimestamp)
	default:
		dst = append(dst, '"')
		dst = now.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"event":{"kind":"event"`...)
	if len(ev.Verb) > 0 {
		dst = append(dst, `,"action":`...)
		dst = e.appendRawString(dst, ev.Verb)
	}
	dst = append(dst, `,"outcome":"`...)
	dst = append(dst, outcome(decision, ev.ResponseCode)...)
	dst = append(dst, `"}`...)
	if len(ev.Username) > 0 || len(ev.UserUID) > 0 {
		dst = append(dst, `,"user":{`...)
		if len(ev.Username) > 0 {
			dst = append(dst, `"name":`...)
			dst = e.appendRawString(dst, ev.Username)
			if len(ev.UserUID) > 0 {
				dst = append(dst, ',')
			}
		}
		if len(ev.UserUID) > 0 {
			dst = append(dst, `"id":`...)
			dst = e.appendRawString(dst, ev.UserUID)
		}
		dst = append(dst, '}')
	}
	if len(ev.UserAgent) > 0 {
		dst = append(dst, `,"user_agent":{"original":`...)
		dst = e.appendRawString(dst, ev.UserAgent)
		dst = append(dst, '}')
	}
	dst = appendSourceIPs(dst, ev.SourceIPs)
	dst = append(dst, `,"kubernetes":{"audit":`...)
	dst = append(dst, e.doc...)
	dst = append(dst, "}}\n"...)
	return dst, res
}

// outcome is event.outcome: the authorizer's decision when the event
// has one (as the integration's pipeline reads it), else the response
// code.
func outcome(decision []byte, code int) string {
	switch string(decision) {
	case "allow":
		return "success"
	case "forbid":
		return "failure"
	}
	switch {
	case code >= 400:
		return "failure"
	case code >= 100:
		return "success"
	}
	return "unknown"
}

// validTime reports whether the raw string body is an RFC 3339 time
// without escapes, ready to copy.
func validTime(raw []byte) bool {
	if len(raw) == 0 || needsEscape(raw) {
		return false
	}
	_, err := parser.ParseTime(raw)
	return err == nil
}

func appendQuoted(dst, raw []byte) []byte {
	dst = append(dst, '"')
	dst = append(dst, raw...)
	return append(dst, '"')
}

// appendSourceIPs appends "source":{"ip":[…]} with the sourceIPs that
// are IP addresses (the integration's pipeline converts the array to
// type ip and would fail the document on anything else).
func appendSourceIPs(dst, arr []byte) []byte {
	if len(arr) < 2 {
		return dst
	}
	mark := len(dst)
	dst = append(dst, `,"source":{"ip":[`...)
	n := 0
	w := walker{s: arr}
	if !w.consume('[') {
		return dst[:mark]
	}
	for !w.consume(']') {
		if n > 0 || w.i > 1 {
			w.consume(',')
		}
		v, ok := w.value()
		if !ok {
			return dst[:mark]
		}
		if len(v) > 2 && v[0] == '"' && !needsEscape(v[1:len(v)-1]) {
			if _, err := netip.ParseAddr(string(v[1 : len(v)-1])); err == nil {
				if n > 0 {
					dst = append(dst, ',')
				}
				dst = append(dst, v...)
				n++
			}
		}
	}
	if n == 0 {
		return dst[:mark]
	}
	return append(dst, "]}"...)
}

// rewrite copies line into e.doc with the annotations' keys dedotted and,
// unless keepMetadata, the metadata of requestObject and responseObject
// removed. It returns the value of the authorization.k8s.io/decision
// annotation (nil when absent), a view of line.
func (e *encoder) rewrite(line []byte, ev *parser.Event) (decision []byte) {
	type edit struct{ from, to int } // line[from:to] is handled apart
	var edits [3]edit
	n := 0
	ann, annOK := outputs.OffsetIn(line, ev.Annotations)
	if annOK {
		edits[n] = edit{ann, ann + len(ev.Annotations)}
		n++
	}
	if !e.keepMetadata {
		for _, s := range [2]parser.Span{ev.RequestObject, ev.ResponseObject} {
			if s.Present() && line[s.Start] == '{' {
				if from, to, ok := memberSpan(line[s.Start:s.End], "metadata"); ok {
					edits[n] = edit{s.Start + from, s.Start + to}
					n++
				}
			}
		}
	}
	for i := 1; i < n; i++ {
		for j := i; j > 0 && edits[j].from < edits[j-1].from; j-- {
			edits[j], edits[j-1] = edits[j-1], edits[j]
		}
	}
	d := e.doc[:0]
	pos := 0
	for _, ed := range edits[:n] {
		d = append(d, line[pos:ed.from]...)
		if annOK && ed.from == ann {
			d, decision = dedot(d, ev.Annotations)
		}
		pos = ed.to
	}
	e.doc = append(d, line[pos:]...)
	return decision
}

// memberSpan finds the member key of the JSON object obj and returns the
// bytes to remove with it: the member and one comma next to it.
func memberSpan(obj []byte, key string) (from, to int, ok bool) {
	w := walker{s: obj}
	if !w.consume('{') {
		return 0, 0, false
	}
	prevEnd := -1 // where the previous member's value ends
	for !w.consume('}') {
		if prevEnd >= 0 && !w.consume(',') {
			return 0, 0, false
		}
		w.ws()
		start := w.i
		k, ok := w.value()
		if !ok || len(k) < 2 || k[0] != '"' || !w.consume(':') {
			return 0, 0, false
		}
		if _, ok := w.value(); !ok {
			return 0, 0, false
		}
		end := w.i
		if string(k[1:len(k)-1]) == key {
			if prevEnd >= 0 {
				return prevEnd, end, true // with the comma before it
			}
			w.ws()
			if w.i < len(obj) && obj[w.i] == ',' {
				w.i++
				w.ws()
				return start, w.i, true // with the comma after it
			}
			return start, end, true
		}
		prevEnd = end
	}
	return 0, 0, false
}

// dedot appends the annotations object obj with '.' replaced by '_' in
// every key, values unchanged, and returns the decision annotation's
// value. Scan validated obj.
func dedot(dst, obj []byte) ([]byte, []byte) {
	var decision []byte
	w := walker{s: obj}
	if !w.consume('{') {
		return append(dst, obj...), nil
	}
	dst = append(dst, '{')
	first := true
	for !w.consume('}') {
		if !first {
			w.consume(',')
			dst = append(dst, ',')
		}
		first = false
		k, ok := w.value()
		if !ok || !w.consume(':') {
			return dst, decision
		}
		v, ok := w.value()
		if !ok {
			return dst, decision
		}
		if string(k) == `"authorization.k8s.io/decision"` && len(v) >= 2 && v[0] == '"' {
			decision = v[1 : len(v)-1]
		}
		for _, c := range k {
			if c == '.' {
				c = '_'
			}
			dst = append(dst, c)
		}
		dst = append(dst, ':')
		dst = append(dst, v...)
	}
	return append(dst, '}'), decision
}

// walker reads a JSON text that Scan has validated.
type walker struct {
	s []byte
	i int
}

func (w *walker) ws() {
	for w.i < len(w.s) && isSpace(w.s[w.i]) {
		w.i++
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

// value skips one JSON value and returns its bytes.
func (w *walker) value() ([]byte, bool) {
	w.ws()
	start := w.i
	depth := 0
	for w.i < len(w.s) {
		switch c := w.s[w.i]; c {
		case '"':
			w.i++
			for w.i < len(w.s) && w.s[w.i] != '"' {
				if w.s[w.i] == '\\' {
					w.i++
				}
				w.i++
			}
			if w.i >= len(w.s) {
				return nil, false
			}
			w.i++
		case '{', '[':
			depth++
			w.i++
		case '}', ']':
			if depth == 0 {
				return w.s[start:w.i], w.i > start
			}
			depth--
			w.i++
		case ',', ':':
			if depth == 0 {
				return w.s[start:w.i], w.i > start
			}
			w.i++
		case ' ', '\t', '\n', '\r':
			if depth == 0 {
				v := w.s[start:w.i]
				return v, len(v) > 0
			}
			w.i++
		default:
			w.i++
		}
		if depth == 0 && (w.s[w.i-1] == '"' || w.s[w.i-1] == '}' || w.s[w.i-1] == ']') {
			return w.s[start:w.i], true
		}
	}
	return w.s[start:w.i], depth == 0 && w.i > start
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (e *encoder) appendRawString(dst, raw []byte) []byte {
	return jsonstr.AppendRaw(dst, raw, &e.unq)
}

func needsEscape(s []byte) bool { return jsonstr.NeedsEscape(s) }

func appendString(dst, s []byte) []byte { return jsonstr.Append(dst, s) }
