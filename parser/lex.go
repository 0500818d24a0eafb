package parser

import "math/bits"

// The lexing primitives. Each takes the input and a position and returns the
// position after what it consumed plus an error code (cOK or one of the
// codes in errors.go); on error the returned position is where the problem
// is. They never read outside s.

const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

// strSpecial returns a mask with bit 7 set in each byte of w (little endian)
// that is '"', '\\' or below 0x20. Bytes above the lowest flagged byte may be
// flagged wrongly (borrows), so only the lowest set bit is meaningful.
//
// Flipping bit 1 maps '"' (0x22) to 0x20 and keeps 0x00-0x1f below 0x20
// while 0x20, 0x21 and 0x23 map to 0x22, 0x23 and 0x21: so "below 0x21
// after the flip" is exactly "control character or quote".
func strSpecial(w uint64) uint64 {
	q := w ^ (lo8 * 0x02)
	b := w ^ (lo8 * '\\')
	return ((q - lo8*0x21) | (b - lo8)) &^ w & hi8
}

// isWS reports whether c is JSON whitespace.
func isWS(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

// skipWS returns the position of the first non-whitespace byte at or after i.
func skipWS(s []byte, i int) int {
	for i < len(s) && s[i] <= ' ' && isWS(s[i]) {
		i++
	}
	return i
}

// scanString scans a string body starting just after its opening quote. It
// returns the position after the closing quote and whether the body has a
// backslash escape.
func scanString(s []byte, i int) (int, bool, int) {
	for i+8 <= len(s) {
		if m := strSpecial(load64(s, i)); m != 0 {
			i += bits.TrailingZeros64(m) >> 3
			if s[i] == '"' {
				return i + 1, false, cOK
			}
			return scanStringSlow(s, i)
		}
		i += 8
	}
	return scanStringSlow(s, i)
}

// scanStringSlow continues scanString at s[i], handling escapes and the
// last bytes of the input.
func scanStringSlow(s []byte, i int) (int, bool, int) {
	esc := false
	for {
		for {
			if i+8 <= len(s) {
				if m := strSpecial(load64(s, i)); m != 0 {
					i += bits.TrailingZeros64(m) >> 3
					break
				}
				i += 8
				continue
			}
			if i >= len(s) {
				return i, esc, cEOF
			}
			if c := s[i]; c == '"' || c == '\\' || c < 0x20 {
				break
			}
			i++
		}
		switch c := s[i]; {
		case c == '"':
			return i + 1, esc, cOK
		case c < 0x20:
			return i, esc, cCtrl
		}
		// Backslash.
		esc = true
		if i+1 >= len(s) {
			return i + 1, esc, cEOF
		}
		switch s[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			for k := i + 2; k < i+6; k++ {
				if k >= len(s) {
					return k, esc, cEOF
				}
				if !isHex(s[k]) {
					return i, esc, cEscape
				}
			}
			i += 6
		default:
			return i, esc, cEscape
		}
	}
}

func isHex(c byte) bool {
	return c-'0' < 10 || (c|0x20)-'a' < 6
}

// scanNumber scans a number starting at s[i], which is '-' or a digit, per
// RFC 8259: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(s []byte, i int) (int, int) {
	if s[i] == '-' {
		i++
		if i >= len(s) {
			return i, cEOF
		}
	}
	switch c := s[i]; {
	case c == '0':
		i++
	case c-'1' < 9:
		i++
		for i < len(s) && s[i]-'0' < 10 {
			i++
		}
	default:
		return i, cNumber
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) {
			return i, cEOF
		}
		if s[i]-'0' >= 10 {
			return i, cNumber
		}
		for i < len(s) && s[i]-'0' < 10 {
			i++
		}
	}
	if i < len(s) && s[i]|0x20 == 'e' {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) {
			return i, cEOF
		}
		if s[i]-'0' >= 10 {
			return i, cNumber
		}
		for i < len(s) && s[i]-'0' < 10 {
			i++
		}
	}
	return i, cOK
}

// scanLiteral checks that s[i:] starts with lit (true, false or null).
func scanLiteral(s []byte, i int, lit string) (int, int) {
	for k := 0; k < len(lit); k++ {
		if i+k >= len(s) {
			return i + k, cEOF
		}
		if s[i+k] != lit[k] {
			return i, cChar
		}
	}
	return i + len(lit), cOK
}

// skipValue validates the value starting at s[i] (not whitespace; i may be
// len(s)) and returns the position after it. depth is the number of
// containers enclosing the value.
func skipValue(s []byte, i, depth int) (int, int) {
	if i >= len(s) {
		return i, cEOF
	}
	switch c := s[i]; c {
	case '"':
		j, _, code := scanString(s, i+1)
		return j, code
	case '{', '[':
		j, code := skipContainer(s, i, depth, nil)
		if code == cNeedDeep {
			return skipDeep(s, i, depth)
		}
		return j, code
	case 't':
		return scanLiteral(s, i, "true")
	case 'f':
		return scanLiteral(s, i, "false")
	case 'n':
		return scanLiteral(s, i, "null")
	default:
		if c == '-' || c-'0' < 10 {
			return scanNumber(s, i)
		}
		return i, cChar
	}
}

// skipDeep is skipContainer with room for MaxDepth levels. It lives in its
// own frame so the common case does not pay for zeroing the big stack.
//
//go:noinline
func skipDeep(s []byte, i, depth int) (int, int) {
	var spill [MaxDepth/64 + 1]uint64
	return skipContainer(s, i, depth, spill[:])
}

// skipContainer validates the object or array starting at s[i] and returns
// the position after it. It keeps a bit per open container (1 = object):
// the innermost 64 in a register, deeper ones spilled to spill; with a nil
// spill it returns cNeedDeep when more than 64 levels are open.
func skipContainer(s []byte, i, depth int, spill []uint64) (int, int) {
	n := 0         // containers open
	var cur uint64 // bit k: kind of the container k levels below the innermost
	var code int
	for {
		// s[i] starts a value.
		c := s[i]
		closed := true
		switch c {
		case '{', '[':
			if depth+n >= MaxDepth {
				return i, cDeep
			}
			if n >= 64 {
				if spill == nil {
					return i, cNeedDeep
				}
				k := n - 64
				spill[k>>6] = spill[k>>6]&^(1<<(k&63)) | (cur>>63)<<(k&63)
			}
			cur <<= 1
			if c == '{' {
				cur |= 1
			}
			n++
			i++
			if i >= len(s) || s[i] <= ' ' {
				i = skipWS(s, i)
				if i >= len(s) {
					return i, cEOF
				}
			}
			if s[i] == c+2 { // '}' or ']'
				i++
				n--
				cur >>= 1
				if n >= 64 {
					k := n - 64
					cur |= (spill[k>>6] >> (k & 63) & 1) << 63
				}
				break
			}
			closed = false
			if c == '{' {
				if s[i] != '"' {
					return i, cKey
				}
				if i, _, code = scanString(s, i+1); code != cOK {
					return i, code
				}
				if i+1 < len(s) && s[i] == ':' && s[i+1] > ' ' {
					i++
				} else if i, code = scanColon(s, i); code != cOK {
					return i, code
				}
			}
		case '"':
			if i, _, code = scanString(s, i+1); code != cOK {
				return i, code
			}
		case 't':
			if i, code = scanLiteral(s, i, "true"); code != cOK {
				return i, code
			}
		case 'f':
			if i, code = scanLiteral(s, i, "false"); code != cOK {
				return i, code
			}
		case 'n':
			if i, code = scanLiteral(s, i, "null"); code != cOK {
				return i, code
			}
		default:
			if c != '-' && c-'0' >= 10 {
				return i, cChar
			}
			if i, code = scanNumber(s, i); code != cOK {
				return i, code
			}
		}
		if !closed {
			continue
		}
		// A value ended: close containers until one continues.
		for {
			if n == 0 {
				return i, cOK
			}
			if i >= len(s) || s[i] <= ' ' {
				i = skipWS(s, i)
				if i >= len(s) {
					return i, cEOF
				}
			}
			obj := cur&1 != 0
			c = s[i]
			if c == ',' {
				i++
				if i >= len(s) || s[i] <= ' ' {
					i = skipWS(s, i)
				}
				if i >= len(s) {
					return i, cEOF
				}
				if obj {
					if s[i] != '"' {
						return i, cKey
					}
					if i, _, code = scanString(s, i+1); code != cOK {
						return i, code
					}
					if i+1 < len(s) && s[i] == ':' && s[i+1] > ' ' {
						i++
					} else if i, code = scanColon(s, i); code != cOK {
						return i, code
					}
				}
				break
			}
			if obj && c == '}' || !obj && c == ']' {
				i++
				n--
				cur >>= 1
				if n >= 64 {
					k := n - 64
					cur |= (spill[k>>6] >> (k & 63) & 1) << 63
				}
				continue
			}
			if obj {
				return i, cObjEnd
			}
			return i, cArrEnd
		}
	}
}

// scanColon expects optional whitespace, ':', optional whitespace at s[i]
// and returns the position after them; a value must follow.
func scanColon(s []byte, i int) (int, int) {
	if i < len(s) && s[i] == ':' {
		i++
	} else {
		i = skipWS(s, i)
		if i >= len(s) {
			return i, cEOF
		}
		if s[i] != ':' {
			return i, cColon
		}
		i++
	}
	if i < len(s) && s[i] > ' ' {
		return i, cOK
	}
	i = skipWS(s, i)
	if i >= len(s) {
		return i, cEOF
	}
	return i, cOK
}
