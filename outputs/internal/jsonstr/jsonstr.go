// Package jsonstr writes JSON strings by hand, for the outputs that build
// their bodies without encoding/json.
package jsonstr

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"

	"github.com/audittail/audittail/parser"
)

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// specialMask has the high bit set in each byte of w that is '"', '\\', a
// control character or not ASCII (exactly for the lowest such byte; bytes
// after it may be flagged falsely).
func specialMask(w uint64) uint64 {
	q := w ^ (lsb * '"')
	b := w ^ (lsb * '\\')
	return (((q - lsb) &^ q) | ((b - lsb) &^ b) | ((w - lsb*0x20) &^ w) | w) & msb
}

// nextSpecial returns the index of the first byte of s that needs escaping
// in a JSON string, or len(s).
func nextSpecial(s []byte, i int) int {
	for ; i+8 <= len(s); i += 8 {
		if m := specialMask(binary.LittleEndian.Uint64(s[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return i
		}
	}
	return len(s)
}

// NeedsEscape reports whether s holds a byte that a JSON string must
// escape ('"', '\\', a control character) or that is not ASCII.
func NeedsEscape(s []byte) bool { return nextSpecial(s, 0) < len(s) }

const hexDigits = "0123456789abcdef"

// Append appends s as a JSON string: '"' and '\\' escaped, control
// characters as \n, \r, \t or \u00XX, and each byte of invalid UTF-8 as
// \ufffd (what encoding/json does). Valid UTF-8 is copied unchanged.
func Append(dst, s []byte) []byte {
	dst = append(dst, '"')
	i := 0
	for {
		j := nextSpecial(s, i)
		dst = append(dst, s[i:j]...)
		if j == len(s) {
			break
		}
		c := s[j]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
			i = j + 1
		case c == '\n':
			dst = append(dst, '\\', 'n')
			i = j + 1
		case c == '\r':
			dst = append(dst, '\\', 'r')
			i = j + 1
		case c == '\t':
			dst = append(dst, '\\', 't')
			i = j + 1
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			i = j + 1
		default:
			r, size := utf8.DecodeRune(s[j:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, `\ufffd`...)
			} else {
				dst = append(dst, s[j:j+size]...)
			}
			i = j + size
		}
	}
	return append(dst, '"')
}

// AppendRaw appends the JSON string whose body (between the quotes,
// escapes not decoded) is raw. Plain printable ASCII is copied as it is;
// anything else is decoded with parser.Unquote into *scratch and escaped
// again, so that invalid UTF-8 becomes U+FFFD as encoding/json would
// decode it.
func AppendRaw(dst, raw []byte, scratch *[]byte) []byte {
	if !NeedsEscape(raw) {
		dst = append(dst, '"')
		dst = append(dst, raw...)
		return append(dst, '"')
	}
	var err error
	*scratch, err = parser.Unquote((*scratch)[:0], raw)
	if err != nil {
		// Scan validated the line, so this does not happen; send the
		// value escaped as it is rather than fail the event.
		return Append(dst, raw)
	}
	return Append(dst, *scratch)
}
