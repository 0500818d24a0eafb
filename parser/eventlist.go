package parser

// SplitEventList walks an audit.k8s.io EventList, the body kube-apiserver's
// webhook backend POSTs (`{"kind":"EventList","apiVersion":...,
// "metadata":{},"items":[{...},{...}]}`, compact or pretty-printed), and
// calls fn with each element of "items" as a sub-slice of body, from its
// '{' to its '}'. Nothing is copied; an item is valid as long as body is.
//
// The whole body is validated before fn is first called, so a truncated or
// corrupt body yields no items and a *SyntaxError. "items" may be absent or
// null (no items); any other non-array value is an ErrSyntax error. An item
// that is not an object stops the walk with an ErrNotObject error after the
// items before it were yielded. As with encoding/json the last "items" key
// wins. The other keys (kind, apiVersion) are not checked. If fn returns an
// error, SplitEventList stops and returns it unchanged.
func SplitEventList(body []byte, fn func(item []byte) error) error {
	_, err := SplitEventListHeader(body, nil, fn)
	return err
}

// EventListHeader is what SplitEventListHeader reads of a body besides
// its items: the raw (still escaped) string bodies of its top-level
// "kind" and "apiVersion", nil when absent or not strings.
type EventListHeader struct {
	Kind, APIVersion []byte
}

// SplitEventListHeader is SplitEventList that also returns the body's
// kind and apiVersion, found in the validating pass (no second walk over
// the body). If check is not nil it is called with them before the first
// item; an error from it is returned unchanged and no item is yielded.
func SplitEventListHeader(body []byte, check func(EventListHeader) error, fn func(item []byte) error) (EventListHeader, error) {
	var h EventListHeader
	// Pass 1: validate, and find the value of the last "items" key.
	i := skipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return h, makeError(body, i, cNotObj)
	}
	items, kind, version := -1, -1, -1
	i, code := walkTop(body, i, func(key []byte, esc bool, v int) {
		if esc {
			var buf [3 * 6 * 5]byte
			if len(key) <= 6*5 {
				key, _, _ = unquote(buf[:0], key)
			}
		}
		switch string(key) {
		case "items":
			items = v
		case "kind":
			kind = v
		case "apiVersion":
			version = v
		}
	})
	if code != cOK {
		return h, makeError(body, i, code)
	}
	h.Kind, h.APIVersion = stringAt(body, kind), stringAt(body, version)
	if check != nil {
		if err := check(h); err != nil {
			return h, err
		}
	}
	if items < 0 || body[items] == 'n' {
		return h, nil
	}
	if body[items] != '[' {
		return h, &SyntaxError{Offset: items, Msg: "EventList items is not an array", Err: ErrSyntax}
	}
	// Pass 2: yield the items.
	i = skipWS(body, items+1)
	for n := 0; body[i] != ']'; n++ {
		if body[i] != '{' {
			return h, &SyntaxError{Offset: i, Msg: "EventList item is not an object", Err: ErrNotObject}
		}
		j, _ := skipValue(body, i, 2)
		if err := fn(body[i:j]); err != nil {
			return h, err
		}
		i = skipWS(body, j)
		if body[i] == ',' {
			i = skipWS(body, i+1)
		}
	}
	return h, nil
}

// stringAt returns the body of the JSON string at s[v] (validated), or nil
// if v < 0 or the value there is not a string.
func stringAt(s []byte, v int) []byte {
	if v < 0 || s[v] != '"' {
		return nil
	}
	k, _, code := scanString(s, v+1)
	if code != cOK {
		return nil
	}
	return s[v+1 : k-1]
}

// walkTop validates the object at s[i] ('{') and what follows it (only
// whitespace), calling member for each member's raw key and value offset.
func walkTop(s []byte, i int, member func(key []byte, esc bool, v int)) (int, int) {
	i = skipWS(s, i+1)
	if i >= len(s) {
		return i, cEOF
	}
	if s[i] == '}' {
		return trailer(s, i+1)
	}
	for {
		if s[i] != '"' {
			return i, cKey
		}
		k, esc, code := scanString(s, i+1)
		if code != cOK {
			return k, code
		}
		key := s[i+1 : k-1]
		if i, code = scanColon(s, k); code != cOK {
			return i, code
		}
		member(key, esc, i)
		if i, code = skipValue(s, i, 1); code != cOK {
			return i, code
		}
		if i = skipWS(s, i); i >= len(s) {
			return i, cEOF
		}
		switch s[i] {
		case '}':
			return trailer(s, i+1)
		case ',':
			if i = skipWS(s, i+1); i >= len(s) {
				return i, cEOF
			}
		default:
			return i, cObjEnd
		}
	}
}
