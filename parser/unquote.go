package parser

import (
	"math/bits"
	"unicode/utf8"
)

// Unquote appends the decoded value of raw, the bytes of a JSON string
// between its quotes (as Scan returns them), to dst and returns the extended
// buffer. It decodes exactly as encoding/json does: escapes including \u and
// surrogate pairs; a lone or mismatched surrogate escape becomes U+FFFD, and
// each byte of invalid UTF-8 becomes U+FFFD. It allocates only when dst lacks
// room. It returns a *SyntaxError (ErrSyntax) for an illegal escape, a
// control character or an unescaped quote.
func Unquote(dst, raw []byte) ([]byte, error) {
	dst, off, code := unquote(dst, raw)
	if code != cOK {
		if code == cEOF {
			code = cEscape
		}
		return dst, makeError(raw, off, code)
	}
	return dst, nil
}

func unquote(dst, s []byte) ([]byte, int, int) {
	r := 0
	for r < len(s) {
		// Copy the run of plain ASCII bytes, eight at a time.
		j := r
		for j+8 <= len(s) {
			w := load64(s, j)
			if m := strSpecial(w) | w&hi8; m != 0 {
				j += bits.TrailingZeros64(m) >> 3
				goto found
			}
			j += 8
		}
		for j < len(s) {
			if c := s[j]; c == '\\' || c == '"' || c < ' ' || c >= utf8.RuneSelf {
				break
			}
			j++
		}
	found:
		dst = append(dst, s[r:j]...)
		r = j
		if r >= len(s) {
			break
		}
		c := s[r]
		switch {
		case c == '\\':
			if r+1 >= len(s) {
				return dst, r, cEscape
			}
			switch e := s[r+1]; e {
			case '"', '\\', '/':
				dst = append(dst, e)
				r += 2
			case 'b':
				dst = append(dst, '\b')
				r += 2
			case 'f':
				dst = append(dst, '\f')
				r += 2
			case 'n':
				dst = append(dst, '\n')
				r += 2
			case 'r':
				dst = append(dst, '\r')
				r += 2
			case 't':
				dst = append(dst, '\t')
				r += 2
			case 'u':
				rr := getu4(s[r:])
				if rr < 0 {
					return dst, r, cEscape
				}
				r += 6
				if 0xD800 <= rr && rr < 0xE000 {
					// A surrogate: valid only as a high one followed by a
					// low one; otherwise U+FFFD and the next escape is
					// decoded on its own, as encoding/json does.
					if rr < 0xDC00 {
						if rr1 := getu4(s[r:]); 0xDC00 <= rr1 && rr1 < 0xE000 {
							r += 6
							dst = utf8.AppendRune(dst, 0x10000+(rr-0xD800)<<10|(rr1-0xDC00))
							break
						}
					}
					rr = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, rr)
			default:
				return dst, r, cEscape
			}
		case c == '"':
			return dst, r, cChar
		case c < ' ':
			return dst, r, cCtrl
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			if rr == utf8.RuneError && size == 1 {
				dst = append(dst, "\uFFFD"...)
			} else {
				dst = append(dst, s[r:r+size]...)
			}
			r += size
		}
	}
	return dst, r, cOK
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c = c - '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}
