package policy

// Minimal JSON walking over input that parser.Scan has validated. The
// functions never read outside s and never loop forever on invalid input;
// on such input their results are merely meaningless.

import "github.com/audittail/audittail/parser"

func isWS(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

func skipWS(s []byte, i int) int {
	for i < len(s) && isWS(s[i]) {
		i++
	}
	return i
}

// skipString returns the position after the string whose opening quote is
// at s[i].
func skipString(s []byte, i int) int {
	for i++; i < len(s); i++ {
		switch s[i] {
		case '"':
			return i + 1
		case '\\':
			i++
		}
	}
	return len(s)
}

// skipValue returns the position after the JSON value starting at s[i].
func skipValue(s []byte, i int) int {
	if i >= len(s) {
		return len(s)
	}
	switch s[i] {
	case '"':
		return skipString(s, i)
	case '{', '[':
		depth := 0
		for ; i < len(s); i++ {
			switch s[i] {
			case '"':
				i = skipString(s, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(s)
	}
	for ; i < len(s); i++ {
		switch s[i] {
		case ',', '}', ']', ' ', '\n', '\r', '\t':
			return i
		}
	}
	return len(s)
}

// nextString iterates over the elements of the JSON array arr: from
// position i (0 to start), it returns the next element's raw string body
// (nil for an element that is not a string), the position to continue
// from, and false when there are no more elements.
func nextString(arr []byte, i int) ([]byte, int, bool) {
	if i == 0 {
		if len(arr) == 0 || arr[0] != '[' {
			return nil, 0, false
		}
		i = 1
	}
	i = skipWS(arr, i)
	if i < len(arr) && arr[i] == ',' {
		i = skipWS(arr, i+1)
	}
	if i >= len(arr) || arr[i] == ']' {
		return nil, i, false
	}
	end := skipValue(arr, i)
	if arr[i] == '"' && end-1 > i {
		return arr[i+1 : end-1], end, true
	}
	if end == i {
		end = i + 1
	}
	return nil, end, true
}

// eachMember calls f for each member of the JSON object at obj[0], in order,
// with the member's raw key (between its quotes), the position of its
// key's opening quote and the position after its value; f returns false
// to stop.
func eachMember(obj []byte, f func(key []byte, start, end int) bool) {
	if len(obj) == 0 || obj[0] != '{' {
		return
	}
	for i := skipWS(obj, 1); i < len(obj) && obj[i] == '"'; {
		ke := skipString(obj, i)
		j := skipWS(obj, ke)
		if j >= len(obj) || obj[j] != ':' {
			return
		}
		v := skipWS(obj, j+1)
		ve := skipValue(obj, v)
		if !f(obj[i+1:max(ke-1, i+1)], i, ve) {
			return
		}
		after := skipWS(obj, ve)
		if after >= len(obj) || obj[after] != ',' {
			return
		}
		i = skipWS(obj, after+1)
	}
}

// keyIs reports whether the raw JSON string body raw decodes to key.
func keyIs(raw []byte, key string) bool {
	if plain(raw) {
		return string(raw) == key
	}
	var buf [256]byte
	v, err := parser.Unquote(buf[:0], raw)
	return err == nil && string(v) == key
}

// memberSpan returns the bytes to cut from the JSON object at obj[0] to
// remove its member whose key decodes to key: from the key to the next
// member's key, or, for the last member, from the end of the member
// before it; false when there is no such member.
func memberSpan(obj []byte, key string) (start, end int, ok bool) {
	prevEnd := -1
	eachMember(obj, func(k []byte, s, e int) bool {
		if !keyIs(k, key) {
			prevEnd = e
			return true
		}
		ok = true
		after := skipWS(obj, e)
		switch {
		case after < len(obj) && obj[after] == ',':
			start, end = s, skipWS(obj, after+1)
		case prevEnd >= 0:
			start, end = prevEnd, e
		default:
			start, end = s, e
		}
		return false
	})
	return start, end, ok
}
