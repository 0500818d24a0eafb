package policy

import (
	"bytes"

	"github.com/audittail/audittail/parser"
)

// AnnotationKey is the annotation Apply adds to the events it changes; its
// value is the policy's Name.
const AnnotationKey = "audittail.io/policy"

// redacted is what a masked value becomes.
const redacted = `"REDACTED"`

// managedFields removes metadata.managedFields from an object and from the
// items of a list.
var managedFields = func() *node {
	n := &node{}
	n.add([]segment{{key: "metadata"}, {key: "managedFields"}}, true)
	n.add([]segment{{key: "items"}, {kind: segAll}, {key: "metadata"}, {key: "managedFields"}}, true)
	return n.finish()
}()

// Apply applies decision d (from p.Decide for the same event) to the event
// ev that parser.Scan filled from line, as kube-apiserver would have
// written the event under this policy:
//
//   - d.Drop() (level None or an omitted stage): the event is dropped: out
//     is nil and changed true;
//   - a level below the event's cuts it: Metadata removes the
//     requestObject and responseObject members, Request the
//     responseObject; the level field then says the applied level;
//   - a level at or above the event's changes nothing (the agent can only
//     take away);
//   - d.OmitManagedFields removes metadata.managedFields (and
//     items[*].metadata.managedFields) from the objects left.
//
// An event it changes is written to dst[:0] (grown as needed) with the
// annotation audittail.io/policy: p.Name added (the annotations object is
// created when absent; one the event has already is replaced, so that no
// key appears twice), and returned with changed true; the result is
// valid JSON and every byte not concerned is as in line. An event left as
// it is is returned as line itself, changed false, without copying or
// allocating.
func (p *Policy) Apply(dst, line []byte, ev *parser.Event, d Decision) (out []byte, changed bool) {
	return Rewrite(dst, line, ev, p, d, nil)
}

// Redact masks the fields r selects in the event ev that parser.Scan filled
// from line: each becomes the string "REDACTED" (an object's or array's
// values each, keys kept; null stays null). An event with something masked
// is written to dst[:0] and returned with changed true, every other byte as
// in line; else line itself is returned, changed false, without copying or
// allocating.
func (r *Redactor) Redact(dst, line []byte, ev *parser.Event) (out []byte, changed bool) {
	return Rewrite(dst, line, ev, nil, Decision{}, r)
}

// Rewrite does what p.Apply and r.Redact do, in one pass over the line.
// Either p or r may be nil. When p is nil, d is ignored; the policy
// annotation is added only when the policy changed the event.
func Rewrite(dst, line []byte, ev *parser.Event, p *Policy, d Decision, r *Redactor) (out []byte, changed bool) {
	var pl plan
	if p != nil {
		if d.Drop() {
			return nil, true
		}
		evLevel, ok := parseLevelRaw(ev.Level)
		if !ok {
			evLevel = RequestResponse
		}
		if d.Level < evLevel {
			pl.cut = true
			if ev.Level != nil {
				pl.level, pl.setLevel = d.Level, true
				pl.policy = true
			}
			pl.dropReq = d.Level < Request && ev.RequestObject.Present()
			pl.dropResp = d.Level < RequestResponse && ev.ResponseObject.Present()
			pl.policy = pl.policy || pl.dropReq || pl.dropResp
		}
		if d.OmitManagedFields {
			if !pl.dropReq && managedFields.selects(ev.RequestObject.Value(line)) {
				pl.req = managedFields
			}
			if !pl.dropResp && managedFields.selects(ev.ResponseObject.Value(line)) {
				pl.resp = managedFields
			}
		}
		pl.name = p.Name
	}
	if r != nil {
		t := &r.classes[r.class(ev)]
		req, resp := t.req, t.resp
		if pl.req != nil {
			req = t.reqMF
		}
		if pl.resp != nil {
			resp = t.respMF
		}
		if !pl.dropReq && req.selects(ev.RequestObject.Value(line)) {
			pl.req = req
		}
		if !pl.dropResp && resp.selects(ev.ResponseObject.Value(line)) {
			pl.resp = resp
		}
		if t.top != nil && t.top.selects(line) {
			pl.top = t.top
		}
	}
	if !pl.policy && pl.req == nil && pl.resp == nil && pl.top == nil {
		return line, false
	}
	w := rewriter{s: line, dst: dst[:0], policy: pl.policy, insAt: -1, annAt: -1}
	w.top(&pl)
	if !w.policy && !w.masked {
		return line, false
	}
	return w.finish(&pl), true
}

type plan struct {
	cut               bool
	level             Level // the level to write, when setLevel
	setLevel          bool  // the event's level is a string: write level
	dropReq, dropResp bool
	policy            bool  // the policy changes the event for sure
	req, resp, top    *node // tries for requestObject, responseObject, the rest
	name              string
}

type rewriter struct {
	s      []byte
	dst    []byte
	last   int  // s[last:] is not yet written to dst
	policy bool // the policy changed something
	masked bool // a value was masked
	// Where to add the policy annotation: at dst[insAt], with a leading
	// comma (insComma), inside a new annotations member (insMember) or as
	// the value of a non-object annotations member (insObject).
	insAt                          int
	insComma, insMember, insObject bool
	// annAt is where the annotations object starts in dst (-1: none).
	annAt int
	// The closing brace of the last object walked: its position in the
	// output and whether a member is left before it.
	endAt   int
	endKept bool
	kbuf    [128]byte // decoded keys
}

func (w *rewriter) flush(to int) {
	w.dst = append(w.dst, w.s[w.last:to]...)
	w.last = to
}

// outPos returns the position in the output of s[i], i >= w.last, were
// nothing changed before it from here on.
func (w *rewriter) outPos(i int) int { return len(w.dst) + i - w.last }

// cut removes s[a:b].
func (w *rewriter) cut(a, b int) {
	w.flush(a)
	w.last = b
}

// replace writes with in place of s[a:b].
func (w *rewriter) replace(a, b int, with string) {
	w.flush(a)
	w.dst = append(w.dst, with...)
	w.last = b
}

// top walks the event object.
func (w *rewriter) top(pl *plan) {
	s := w.s
	i := skipWS(s, 0)
	if i >= len(s) || s[i] != '{' {
		return
	}
	sawAnnotations := false
	it := w.open(i)
	for key, ok := w.next(&it); ok; key, ok = w.next(&it) {
		v := it.v
		end, act := -1, keep
		switch string(key) {
		case "level":
			// Only a string level is the event's level: a level of another
			// type (not one kube-apiserver writes) stays as it is.
			if pl.cut && pl.setLevel {
				end = skipValue(s, v)
				w.replace(v, end, levelJSON[pl.level])
			}
		case "requestObject":
			switch {
			case pl.dropReq:
				end, act = skipValue(s, v), remove
			case pl.req != nil:
				end = w.value(v, pl.req)
			}
		case "responseObject":
			switch {
			case pl.dropResp:
				end, act = skipValue(s, v), remove
			case pl.resp != nil:
				end = w.value(v, pl.resp)
			}
		case "annotations":
			sawAnnotations = true
			var n *node
			if pl.top != nil {
				n = pl.top.child(key)
			}
			if s[v] == '{' {
				w.annAt = w.outPos(v)
				end = w.object(v, n, true)
				break
			}
			// null or another type: replaced by an object if the policy
			// changed the event.
			end = skipValue(s, v)
			w.insAt, w.insObject = w.outPos(v), true
			w.insComma, w.insMember = false, false
		default:
			if pl.top != nil {
				if n := pl.top.child(key); n != nil {
					end = w.value(v, n)
				}
			}
		}
		if end < 0 {
			end = skipValue(s, v)
		}
		w.done(&it, end, act)
	}
	w.close(&it, false)
	// w.endAt and w.endKept are now the top object's.
	if !sawAnnotations {
		w.insAt, w.insMember, w.insComma, w.insObject = w.endAt, true, w.endKept, false
	}
	w.flush(len(s))
}

var levelJSON = [...]string{`"None"`, `"Metadata"`, `"Request"`, `"RequestResponse"`}

type action uint8

const (
	keep action = iota
	remove
)

// members iterates over the members of an object:
//
//	it := w.open(i)
//	for key, ok := w.next(&it); ok; key, ok = w.next(&it) {
//		// key (decoded), it.v: the value's position
//		w.done(&it, end, act) // end: after the value; act: keep or remove
//	}
//	end := w.close(&it, annot)
//
// done removes the members said, with their commas; the value's changes
// are written by the loop's body.
type members struct {
	v        int
	j        int // the next member's key, or the closing brace
	ks       int // this member's key
	prevEnd  int // after the previous member's value (or the '{')
	kept     bool
	finished bool
}

func (w *rewriter) open(i int) members {
	return members{j: skipWS(w.s, i+1), prevEnd: i + 1}
}

func (w *rewriter) next(it *members) ([]byte, bool) {
	s := w.s
	if it.finished || it.j >= len(s) || s[it.j] != '"' {
		return nil, false
	}
	it.ks = it.j
	ke := skipString(s, it.j)
	key := s[it.j+1 : max(ke-1, it.j+1)]
	if !plain(key) {
		if k, err := parser.Unquote(w.kbuf[:0], key); err == nil {
			key = k
		}
	}
	it.v = skipWS(s, skipWS(s, ke)+1)
	if it.v >= len(s) {
		it.j = len(s)
		return nil, false
	}
	return key, true
}

func (w *rewriter) done(it *members, end int, act action) {
	s := w.s
	nx := skipWS(s, end)
	more := nx < len(s) && s[nx] == ','
	if more {
		nx = skipWS(s, nx+1)
	}
	if act == remove {
		w.policy = true
		switch {
		case it.kept:
			w.cut(it.prevEnd, end)
		case more:
			w.cut(it.ks, nx)
		default:
			w.cut(it.ks, end)
		}
	} else {
		it.kept = true
	}
	it.prevEnd = end
	it.j = nx
	it.finished = !more
}

// close ends the walk of an object at its closing brace: it records the
// brace's output position in endAt (and in insAt when annot is set) and
// returns the position after the object.
func (w *rewriter) close(it *members, annot bool) int {
	j := min(it.j, len(w.s))
	w.endAt, w.endKept = w.outPos(j), it.kept
	if annot {
		w.insAt, w.insComma, w.insMember, w.insObject = w.endAt, it.kept, false, false
	}
	if j < len(w.s) {
		return j + 1
	}
	return j
}

// object walks the object at s[i] with trie n (nil: nothing selected).
func (w *rewriter) object(i int, n *node, annot bool) int {
	if n != nil && n.mask {
		return w.maskObject(i, n, annot)
	}
	it := w.open(i)
	for key, ok := w.next(&it); ok; key, ok = w.next(&it) {
		var c *node
		if n != nil {
			c = n.child(key)
		}
		switch {
		case c == nil:
			w.done(&it, skipValue(w.s, it.v), keep)
		case c.remove:
			w.done(&it, skipValue(w.s, it.v), remove)
		default:
			w.done(&it, w.value(it.v, c), keep)
		}
	}
	return w.close(&it, annot)
}

// value walks the value at s[i] with trie n and returns its end.
func (w *rewriter) value(i int, n *node) int {
	s := w.s
	if n.mask {
		return w.mask(i, n)
	}
	switch s[i] {
	case '{':
		if len(n.keys) == 0 && n.anyKey == nil {
			break
		}
		return w.object(i, n, false)
	case '[':
		if n.all == nil && len(n.idx) == 0 {
			break
		}
		return w.elements(i, n, false)
	}
	return skipValue(s, i)
}

// elements walks the array at s[i], each element with n.elem(k) (masked
// with it when mask is set) and returns its end.
func (w *rewriter) elements(i int, n *node, mask bool) int {
	s := w.s
	j := skipWS(s, i+1)
	for k := 0; j < len(s) && s[j] != ']'; k++ {
		var c *node
		if n != nil {
			c = n.elem(k)
		}
		var end int
		switch {
		case mask:
			end = w.mask(j, c)
		case c != nil:
			end = w.value(j, c)
		default:
			end = skipValue(s, j)
		}
		if end <= j {
			return len(s)
		}
		j = skipWS(s, end)
		if j < len(s) && s[j] == ',' {
			j = skipWS(s, j+1)
		}
	}
	if j < len(s) {
		return j + 1
	}
	return j
}

// mask replaces the value at s[i] with "REDACTED": a string, number or
// boolean wholly, an object's member values and an array's elements each;
// null stays. Members that n (nil: none) removes are removed.
func (w *rewriter) mask(i int, n *node) int {
	s := w.s
	switch s[i] {
	case '{':
		return w.maskObject(i, n, false)
	case '[':
		return w.elements(i, n, true)
	case 'n':
		return skipValue(s, i)
	}
	end := skipValue(s, i)
	if string(s[i:end]) != redacted {
		w.replace(i, end, redacted)
		w.masked = true
	}
	return end
}

func (w *rewriter) maskObject(i int, n *node, annot bool) int {
	it := w.open(i)
	for key, ok := w.next(&it); ok; key, ok = w.next(&it) {
		var c *node
		if n != nil {
			c = n.child(key)
		}
		if c != nil && c.remove {
			w.done(&it, skipValue(w.s, it.v), remove)
			continue
		}
		w.done(&it, w.mask(it.v, c), keep)
	}
	return w.close(&it, annot)
}

// finish adds the policy annotation when the policy changed the event.
func (w *rewriter) finish(pl *plan) []byte {
	if !w.policy || w.insAt < 0 {
		return w.dst
	}
	if !w.insMember && !w.insObject && w.annAt >= 0 && w.annAt < w.insAt {
		// The event has the annotation already (a policy applied before,
		// by another agent): replaced, so that no key is there twice
		// (Elasticsearch refuses such documents).
		if s, e, ok := memberSpan(w.dst[w.annAt:w.insAt+1], AnnotationKey); ok {
			s, e = w.annAt+s, w.annAt+e
			w.dst = append(w.dst[:s], w.dst[e:]...)
			w.insAt -= e - s
			w.insComma = len(bytes.TrimLeft(w.dst[w.annAt+1:w.insAt], " \t\r\n")) > 0
		}
	}
	var tmp [160]byte
	ins := tmp[:0]
	switch {
	case w.insMember:
		if w.insComma {
			ins = append(ins, ',')
		}
		ins = append(ins, `"annotations":{`...)
	case w.insObject:
		ins = append(ins, '{')
	case w.insComma:
		ins = append(ins, ',')
	}
	ins = appendJSONString(ins, AnnotationKey)
	ins = append(ins, ':')
	ins = appendJSONString(ins, pl.name)
	if w.insMember || w.insObject {
		ins = append(ins, '}')
	}
	at := w.insAt
	if w.insObject {
		// Replace the non-object value written at insAt.
		end := at + len(skipValueBytes(w.dst[at:]))
		w.dst = append(w.dst[:at], append(ins, w.dst[end:]...)...)
		return w.dst
	}
	n := len(w.dst)
	w.dst = append(w.dst, ins...)
	copy(w.dst[at+len(ins):], w.dst[at:n])
	copy(w.dst[at:], ins)
	return w.dst
}

func skipValueBytes(b []byte) []byte { return b[:skipValue(b, 0)] }
