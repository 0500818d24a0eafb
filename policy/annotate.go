package policy

import (
	"bytes"
	"maps"
	"slices"
)

// Annotations are static key/values added to every event of an input
// (add_annotations), encoded once.
type Annotations struct {
	members []byte   // `"k":"v","k2":"v2"`, keys sorted
	keys    []string // sorted
	each    [][]byte // each key's member, `"k":"v"`
}

// NewAnnotations encodes kv; nil when kv is empty.
func NewAnnotations(kv map[string]string) *Annotations {
	if len(kv) == 0 {
		return nil
	}
	a := &Annotations{keys: slices.Sorted(maps.Keys(kv))}
	for i, k := range a.keys {
		if i > 0 {
			a.members = append(a.members, ',')
		}
		m := appendJSONString(nil, k)
		m = append(m, ':')
		m = appendJSONString(m, kv[k])
		a.each = append(a.each, m)
		a.members = append(a.members, m...)
	}
	return a
}

// Add appends to dst the event line with a's members put first in its
// annotations object. ann is the event's parsed annotations (a sub-slice
// of line, or nil when the event has none or they are not an object: a
// new annotations member then goes last, where it wins over a null one).
// An annotation the event already has keeps its own value and is not
// added again (no key appears twice). line must be a JSON object.
func (a *Annotations) Add(dst, line, ann []byte) []byte {
	if off := cap(line) - cap(ann); len(ann) > 0 && off >= 0 && off < len(line) && &line[off] == &ann[0] && line[off] == '{' {
		dst = append(dst, line[:off+1]...)
		n := len(dst)
		if has := a.present(ann); has == 0 {
			dst = append(dst, a.members...)
		} else {
			for i, m := range a.each {
				if i < 64 && has&(1<<i) != 0 {
					continue
				}
				if len(dst) > n {
					dst = append(dst, ',')
				}
				dst = append(dst, m...)
			}
		}
		if rest := bytes.TrimLeft(line[off+1:], " \t\r\n"); len(dst) > n && len(rest) > 0 && rest[0] != '}' {
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

// present returns a bit for each of a's first 64 keys that the
// annotations object ann has.
func (a *Annotations) present(ann []byte) uint64 {
	var has uint64
	eachMember(ann, func(k []byte, _, _ int) bool {
		for i, key := range a.keys[:min(len(a.keys), 64)] {
			if keyIs(k, key) {
				has |= 1 << i
			}
		}
		return true
	})
	return has
}
