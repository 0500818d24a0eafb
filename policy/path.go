package policy

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/audittail/audittail/parser"
)

// A Path selects fields of an audit event, from the top of the event:
// names separated by dots, `[*]` for every element of an array, `[N]` for
// element N, `*` for every member of an object, and `["key"]` (a JSON
// string) for a key with dots or brackets:
//
//	requestObject.spec.containers[*].env[*].value
//	requestObject.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]
type Path struct {
	text string
	segs []segment
}

type segKind uint8

const (
	segKey    segKind = iota // a member by name
	segAnyKey                // *: every member
	segAll                   // [*]: every element
	segIndex                 // [N]
)

type segment struct {
	kind segKind
	key  string
	idx  int
}

// String returns the path as it was parsed.
func (p Path) String() string { return p.text }

// ParsePath parses a field path. Its errors quote the path and name the bad
// segment and its offset.
func ParsePath(s string) (Path, error) {
	p := Path{text: s}
	bad := func(i int, format string, args ...any) (Path, error) {
		return Path{}, fmt.Errorf("path %q: offset %d: %s", s, i, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return Path{}, fmt.Errorf("empty path")
	}
	i := 0
	for i < len(s) {
		switch {
		case s[i] == '[':
			end := strings.IndexByte(s[i:], ']')
			if s[i+1:] != "" && s[i+1] == '"' {
				// A quoted key: find the closing quote, then ']'.
				q := skipString([]byte(s), i+1)
				if q > len(s)-1 || s[q-1] != '"' || s[q] != ']' {
					return bad(i, "bad segment %q (want [\"key\"])", s[i:])
				}
				key, err := parser.Unquote(nil, []byte(s[i+2:q-1]))
				if err != nil {
					return bad(i, "bad segment %q: %v", s[i:q+1], err)
				}
				p.segs = append(p.segs, segment{kind: segKey, key: string(key)})
				i = q + 1
				break
			}
			if end < 0 {
				return bad(i, "unterminated segment %q", s[i:])
			}
			inner := s[i+1 : i+end]
			if inner == "*" {
				p.segs = append(p.segs, segment{kind: segAll})
			} else if n, err := strconv.Atoi(inner); err == nil && n >= 0 && inner[0] != '+' {
				p.segs = append(p.segs, segment{kind: segIndex, idx: n})
			} else {
				return bad(i, "bad segment %q (want [*], [N] or [\"key\"])", s[i:i+end+1])
			}
			i += end + 1
		case s[i] == '.':
			if i == 0 || i+1 >= len(s) || s[i+1] == '.' || s[i+1] == '[' {
				return bad(i, "empty field name")
			}
			i++
		default:
			if i > 0 && s[i-1] != '.' {
				return bad(i, "bad segment %q (a name must follow a dot)", s[i:])
			}
			end := strings.IndexAny(s[i:], ".[]")
			if end < 0 {
				end = len(s) - i
			}
			name := s[i : i+end]
			if strings.ContainsAny(name, "\"*") && name != "*" {
				return bad(i, "bad segment %q (quote the key: [\"key\"])", name)
			}
			if i+end < len(s) && s[i+end] == ']' {
				return bad(i+end, "unexpected ]")
			}
			if name == "*" {
				p.segs = append(p.segs, segment{kind: segAnyKey})
			} else {
				p.segs = append(p.segs, segment{kind: segKey, key: name})
			}
			i += end
		}
	}
	if p.segs[0].kind != segKey {
		return bad(0, "a path starts with a field of the event, not %q", s)
	}
	return p, nil
}

// node is a trie of paths, rooted at some JSON value.
type node struct {
	keys    []keyChild
	anyKey  *node
	all     *node
	idx     []idxChild
	mask    bool // replace the value with "REDACTED"
	remove  bool // remove the member (policy: managedFields)
	needles [][]byte
}

type keyChild struct {
	key string
	n   *node
}

type idxChild struct {
	idx int
	n   *node
}

func (n *node) empty() bool {
	return n == nil || len(n.keys) == 0 && n.anyKey == nil && n.all == nil && len(n.idx) == 0 && !n.mask && !n.remove
}

// add inserts segs under n; the last segment gets mask or remove.
func (n *node) add(segs []segment, remove bool) {
	if len(segs) == 0 {
		if remove {
			n.remove = true
		} else {
			n.mask = true
		}
		return
	}
	var c *node
	switch sg := segs[0]; sg.kind {
	case segKey:
		for _, kc := range n.keys {
			if kc.key == sg.key {
				c = kc.n
			}
		}
		if c == nil {
			c = &node{}
			n.keys = append(n.keys, keyChild{sg.key, c})
		}
	case segAnyKey:
		if n.anyKey == nil {
			n.anyKey = &node{}
		}
		c = n.anyKey
	case segAll:
		if n.all == nil {
			n.all = &node{}
		}
		c = n.all
	case segIndex:
		for _, ic := range n.idx {
			if ic.idx == sg.idx {
				c = ic.n
			}
		}
		if c == nil {
			c = &node{}
			n.idx = append(n.idx, idxChild{sg.idx, c})
		}
	}
	c.add(segs[1:], remove)
}

// child returns the node for the member key, or nil. A removing child wins
// over a masking one.
func (n *node) child(key []byte) *node {
	for i := range n.keys {
		if n.keys[i].key == string(key) {
			return n.keys[i].n
		}
	}
	return n.anyKey
}

func (n *node) elem(i int) *node {
	for _, ic := range n.idx {
		if ic.idx == i {
			return ic.n
		}
	}
	return n.all
}

// clone returns a deep copy of n.
func (n *node) clone() *node {
	if n == nil {
		return nil
	}
	c := &node{mask: n.mask, remove: n.remove}
	for _, kc := range n.keys {
		c.keys = append(c.keys, keyChild{kc.key, kc.n.clone()})
	}
	c.anyKey = n.anyKey.clone()
	c.all = n.all.clone()
	for _, ic := range n.idx {
		c.idx = append(c.idx, idxChild{ic.idx, ic.n.clone()})
	}
	return c
}

// merge adds every path of o to n.
func (n *node) merge(o *node) {
	if o == nil {
		return
	}
	n.mask = n.mask || o.mask
	n.remove = n.remove || o.remove
	for _, kc := range o.keys {
		var c *node
		for _, k := range n.keys {
			if k.key == kc.key {
				c = k.n
			}
		}
		if c == nil {
			c = &node{}
			n.keys = append(n.keys, keyChild{kc.key, c})
		}
		c.merge(kc.n)
	}
	if o.anyKey != nil {
		if n.anyKey == nil {
			n.anyKey = &node{}
		}
		n.anyKey.merge(o.anyKey)
	}
	if o.all != nil {
		if n.all == nil {
			n.all = &node{}
		}
		n.all.merge(o.all)
	}
	for _, ic := range o.idx {
		var c *node
		for _, k := range n.idx {
			if k.idx == ic.idx {
				c = k.n
			}
		}
		if c == nil {
			c = &node{}
			n.idx = append(n.idx, idxChild{ic.idx, c})
		}
		c.merge(ic.n)
	}
}

// finish computes the needles of root n: the quoted keys at least one of
// which a value must contain for the trie to select anything in it (the
// last named key on the way to each leaf). A leaf reached without a named
// key leaves needles nil: always walk.
func (n *node) finish() *node {
	if n.empty() {
		return nil
	}
	var needles [][]byte
	always := false
	var walk func(m *node, last string)
	walk = func(m *node, last string) {
		if m.mask || m.remove {
			if last == "" {
				always = true
				return
			}
			q := appendJSONString(nil, last)
			for _, x := range needles {
				if bytes.Equal(x, q) {
					return
				}
			}
			needles = append(needles, q)
			return
		}
		for _, kc := range m.keys {
			walk(kc.n, kc.key)
		}
		if m.anyKey != nil {
			walk(m.anyKey, last)
		}
		if m.all != nil {
			walk(m.all, last)
		}
		for _, ic := range m.idx {
			walk(ic.n, last)
		}
	}
	walk(n, "")
	if !always {
		n.needles = needles
	}
	return n
}

// selects reports whether value v may hold something the trie selects.
func (n *node) selects(v []byte) bool {
	if n == nil || len(v) == 0 {
		return false
	}
	if n.needles == nil {
		return true
	}
	for _, x := range n.needles {
		if bytes.Contains(v, x) {
			return true
		}
	}
	return escapedName(v)
}

// escapedName reports whether v has a \u escape of a character that can be
// part of a key we look for (a letter, a digit, '-', '.', '/', '_'), or
// an escaped slash: such a key would not match a needle. encoding/json
// never escapes those, so real events have none; \u003c, \u0026 or \u00e9
// do not count.
func escapedName(v []byte) bool {
	if bytes.Contains(v, []byte(`\/`)) {
		return true
	}
	for {
		i := bytes.Index(v, []byte(`\u00`))
		if i < 0 || i+5 >= len(v) {
			return false
		}
		if c := v[i+4]; c >= '2' && c <= '7' {
			if d := unhex(v[i+5]); isHex(v[i+5]) {
				r := (c-'0')<<4 | d
				if r == '-' || r == '.' || r == '/' || r == '_' || '0' <= r && r <= '9' || 'A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' {
					return true
				}
			}
		}
		v = v[i+4:]
	}
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
