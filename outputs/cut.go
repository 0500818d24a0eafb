package outputs

import "github.com/audittail/audittail/parser"

// TruncatedAnnotation is added to the annotations of an event sent without
// its requestObject and/or responseObject; its value names what was cut.
const TruncatedAnnotation = "audittail.io/truncated"

// CutObjects is the rule every size-limited output applies to an event
// longer than its limit: it appends to dst a copy of line without its
// responseObject and, if that is not enough to fit limit bytes, without
// its requestObject too, with the annotation TruncatedAnnotation naming
// what was cut added to annotations (created if absent). The result is
// valid JSON whenever line is. cut is false (and line is appended as it
// is) when the event has neither object. The caller checks the result's
// length: it may still be over the limit.
func CutObjects(dst, line []byte, ev *parser.Event, limit int) (out []byte, cut bool) {
	const ann = len(`,"annotations":{"` + TruncatedAnnotation + `":"requestObject,responseObject"}`)
	var buf [2]parser.Span
	spans := buf[:0]
	if ev.ResponseObject.Present() {
		spans = append(spans, ev.ResponseObject)
	}
	if ev.RequestObject.Present() && (len(spans) == 0 ||
		len(line)-(ev.ResponseObject.End-ev.ResponseObject.Key)+ann > limit) {
		spans = append(spans, ev.RequestObject)
	}
	if len(spans) == 0 {
		return append(dst, line...), false
	}
	names := "responseObject"
	switch {
	case len(spans) == 2:
		names = "requestObject,responseObject"
	case spans[0] == ev.RequestObject:
		names = "requestObject"
	}

	// Edits on line, applied in order of position: removals of the members
	// (each with one comma) and one insertion of the annotation.
	type edit struct {
		from, to int    // line[from:to] is replaced
		text     string // by text
		annotate bool   // text is the annotation member
	}
	var edits [3]edit
	n := 0
	if len(spans) == 2 && spans[1].Key < spans[0].Key {
		spans[0], spans[1] = spans[1], spans[0]
	}
	last := 0
	for _, s := range spans {
		from, to := s.Key, s.End
		if c := skipSpaceBack(line, s.Key-1); c >= last && c >= 0 && line[c] == ',' {
			from = c
		} else if c := skipSpace(line, s.End); c < len(line) && line[c] == ',' {
			to = skipSpace(line, c+1)
		}
		edits[n] = edit{from: from, to: to}
		n++
		last = to
	}
	if off, ok := offsetIn(line, ev.Annotations); ok {
		at := off + 1 // after '{'
		text := `"` + TruncatedAnnotation + `":"` + names + `"`
		if c := skipSpace(line, at); c < len(line) && line[c] != '}' {
			text += ","
		}
		edits[n] = edit{from: at, to: at, text: text}
	} else {
		end := skipSpaceBack(line, len(line)-1) // the closing '}'
		edits[n] = edit{from: end, to: end, text: `"annotations":{"` + TruncatedAnnotation + `":"` + names + `"}`, annotate: true}
	}
	n++
	// Insertion sorts into place (at most three edits).
	for i := 1; i < n; i++ {
		for j := i; j > 0 && edits[j].from < edits[j-1].from; j-- {
			edits[j], edits[j-1] = edits[j-1], edits[j]
		}
	}
	pos := 0
	for _, e := range edits[:n] {
		dst = append(dst, line[pos:e.from]...)
		if e.annotate {
			// A new top-level member: it needs a comma unless the
			// object is now empty.
			if c := skipSpaceBack(dst, len(dst)-1); c >= 0 && dst[c] != '{' {
				dst = append(dst, ',')
			}
		}
		dst = append(dst, e.text...)
		pos = e.to
	}
	return append(dst, line[pos:]...), true
}

// OffsetIn returns where sub starts in line, if sub is a non-empty slice
// of line's array (a field of a parser.Event scanned from line).
func OffsetIn(line, sub []byte) (int, bool) { return offsetIn(line, sub) }

func offsetIn(line, sub []byte) (int, bool) {
	if len(sub) == 0 {
		return 0, false
	}
	off := cap(line) - cap(sub)
	if off < 0 || off+len(sub) > len(line) || &line[off] != &sub[0] {
		return 0, false
	}
	return off, true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

func skipSpaceBack(b []byte, i int) int {
	for i >= 0 && isSpace(b[i]) {
		i--
	}
	return i
}
