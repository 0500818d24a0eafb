package policy

import (
	"bytes"
	"maps"
	"slices"
)

// Annotations are static key/values added to every event of an input
// (add_annotations), encoded once.
type Annotations struct {
	members []byte // `"k":"v","k2":"v2"`, keys sorted
}

// NewAnnotations encodes kv; nil when kv is empty.
func NewAnnotations(kv map[string]string) *Annotations {
	if len(kv) == 0 {
		return nil
	}
	a := &Annotations{}
	for i, k := range slices.Sorted(maps.Keys(kv)) {
		if i > 0 {
			a.members = append(a.members, ',')
		}
		a.members = appendJSONString(a.members, k)
		a.members = append(a.members, ':')
		a.members = appendJSONString(a.members, kv[k])
	}
	return a
}

// Add appends to dst the event line with a's members put first in its
// annotations object. ann is the event's parsed annotations (a sub-slice
// of line, or nil when the event has none or they are not an object: a
// new annotations member then goes last, where it wins over a null one).
// An annotation the event already has keeps its own value, which comes
// later in the object. line must be a JSON object.
func (a *Annotations) Add(dst, line, ann []byte) []byte {
	if off := cap(line) - cap(ann); len(ann) > 0 && off >= 0 && off < len(line) && &line[off] == &ann[0] && line[off] == '{' {
		dst = append(dst, line[:off+1]...)
		dst = append(dst, a.members...)
		if rest := bytes.TrimLeft(line[off+1:], " \t\r\n"); len(rest) > 0 && rest[0] != '}' {
			dst = append(dst, ',')
		}
		return append(dst, line[off+1:]...)
	}
	end := bytes.LastIndexByte(line, '}')
	if end < 0 {
		return append(dst, line...)
	}
	body := bytes.TrimRight(line[:end], " \t\r\n")
	dst = append(dst, line[:end]...)
	if len(body) > 0 && body[len(body)-1] != '{' {
		dst = append(dst, ',')
	}
	dst = append(dst, `"annotations":{`...)
	dst = append(dst, a.members...)
	dst = append(dst, '}')
	return append(dst, line[end:]...)
}
