package policy

// Minimal JSON walking over input that parser.Scan has validated. The
// functions never read outside s and never loop forever on invalid input;
// on such input their results are merely meaningless.

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
