package parser

import (
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// maxMsgpackInput bounds AppendMsgpack's input so that every offset in its
// scratch headers fits in 32 bits.
const maxMsgpackInput = 256 << 20

// Placeholder container headers written by the first pass: the msgpack
// map32/array32 tag, a 4-byte big-endian element count and the 4-byte
// offset+1 of the enclosing placeholder (0 at the top).
const (
	phMap   = 0xdf
	phArray = 0xdd
	phLen   = 9
)

// AppendMsgpack transcodes line, one JSON object as Scan accepts it, to
// msgpack and appends it to dst: objects become maps with the same keys in
// the same order, arrays arrays, strings str (decoded exactly as Unquote
// does), true/false/null bool and nil. A number written as an integer (no
// fraction or exponent) that fits in an int64 or uint64 becomes the smallest
// msgpack int that holds it ("-0" becomes 0); any other number becomes a
// float64, parsed as encoding/json parses it. Every header uses the most
// compact form.
//
// Duplicate keys are kept, in order, in the map: a decoder that builds a map
// from it (Fluentd's Ruby Hash, msgpack-go's map[string]any) lets the last
// one win, as encoding/json does.
//
// It returns an error, and dst unchanged, exactly when encoding/json would
// fail to unmarshal line into an `any` holding an object: a *SyntaxError
// (see Scan), or ErrNumberRange for a number beyond float64's range. Inputs
// over 256 MiB are refused with ErrTooLong.
//
// It does not allocate when dst has room: the first pass writes 9-byte
// container headers that a second pass compacts in place, so room means
// about len(line)*3 + 64 spare bytes for typical audit events.
func AppendMsgpack(dst, line []byte) ([]byte, error) {
	if len(line) > maxMsgpackInput {
		return dst, &SyntaxError{Offset: maxMsgpackInput, Msg: "input longer than 256 MiB for msgpack", Err: ErrTooLong}
	}
	start := len(dst)
	out, i, code := transcode(dst, line)
	if code != cOK {
		return dst[:start], makeError(line, i, code)
	}
	return compactMsgpack(out, start), nil
}

func transcode(dst, s []byte) ([]byte, int, int) {
	start := len(dst)
	i := skipWS(s, 0)
	if i >= len(s) || s[i] != '{' {
		return dst, i, cNotObj
	}
	cur := -1 // offset from start of the innermost open placeholder
	depth := 0
	var code int
	for {
		// s[i] starts a value.
		if cur >= 0 && dst[start+cur] == phArray {
			incCount(dst, start+cur)
		}
		c := s[i]
		closed := true
		switch c {
		case '{', '[':
			if depth >= MaxDepth {
				return dst, i, cDeep
			}
			depth++
			pos := len(dst) - start
			tag := byte(phArray)
			if c == '{' {
				tag = phMap
			}
			dst = append(dst, tag, 0, 0, 0, 0, 0, 0, 0, 0)
			binary.BigEndian.PutUint32(dst[start+pos+5:], uint32(cur+1))
			cur = pos
			i = skipWS(s, i+1)
			if i >= len(s) {
				return dst, i, cEOF
			}
			if s[i] == c+2 {
				i++
				depth--
				cur = parentOf(dst, start+cur)
				break
			}
			closed = false
			if c == '{' {
				if dst, i, code = transcodeKey(dst, s, i, start+cur); code != cOK {
					return dst, i, code
				}
			}
		case '"':
			if dst, i, code = transcodeString(dst, s, i); code != cOK {
				return dst, i, code
			}
		case 't':
			if i, code = scanLiteral(s, i, "true"); code != cOK {
				return dst, i, code
			}
			dst = append(dst, 0xc3)
		case 'f':
			if i, code = scanLiteral(s, i, "false"); code != cOK {
				return dst, i, code
			}
			dst = append(dst, 0xc2)
		case 'n':
			if i, code = scanLiteral(s, i, "null"); code != cOK {
				return dst, i, code
			}
			dst = append(dst, 0xc0)
		default:
			if c != '-' && c-'0' >= 10 {
				return dst, i, cChar
			}
			v := i
			if i, code = scanNumber(s, i); code != cOK {
				return dst, i, code
			}
			var ok bool
			if dst, ok = appendNumber(dst, s[v:i]); !ok {
				return dst, v, cRange
			}
		}
		if !closed {
			continue
		}
		for {
			if cur < 0 {
				j, code := trailer(s, i)
				return dst, j, code
			}
			i = skipWS(s, i)
			if i >= len(s) {
				return dst, i, cEOF
			}
			obj := dst[start+cur] == phMap
			c = s[i]
			if c == ',' {
				i = skipWS(s, i+1)
				if i >= len(s) {
					return dst, i, cEOF
				}
				if obj {
					if dst, i, code = transcodeKey(dst, s, i, start+cur); code != cOK {
						return dst, i, code
					}
				}
				break
			}
			if obj && c == '}' || !obj && c == ']' {
				i++
				depth--
				cur = parentOf(dst, start+cur)
				continue
			}
			if obj {
				return dst, i, cObjEnd
			}
			return dst, i, cArrEnd
		}
	}
}

func incCount(dst []byte, h int) {
	b := dst[h+1 : h+5]
	binary.BigEndian.PutUint32(b, binary.BigEndian.Uint32(b)+1)
}

func parentOf(dst []byte, h int) int {
	return int(binary.BigEndian.Uint32(dst[h+5:h+9])) - 1
}

// transcodeKey appends the key at s[i] (which must be a string), counts it
// in the map placeholder at h, and consumes the colon.
func transcodeKey(dst, s []byte, i, h int) ([]byte, int, int) {
	if i >= len(s) {
		return dst, i, cEOF
	}
	if s[i] != '"' {
		return dst, i, cKey
	}
	incCount(dst, h)
	dst, i, code := transcodeString(dst, s, i)
	if code != cOK {
		return dst, i, code
	}
	i, code = scanColon(s, i)
	return dst, i, code
}

// transcodeString appends the string starting at s[i] ('"') as a msgpack str.
func transcodeString(dst, s []byte, i int) ([]byte, int, int) {
	j, esc, code := scanString(s, i+1)
	if code != cOK {
		return dst, j, code
	}
	raw := s[i+1 : j-1]
	if !esc && (isASCII(raw) || utf8.Valid(raw)) {
		dst = appendStrHeader(dst, len(raw))
		return append(dst, raw...), j, cOK
	}
	// Decode after a 5-byte gap, then close the gap to the header's size.
	h := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0)
	dst, _, _ = unquote(dst, raw) // raw was validated by scanString
	n := len(dst) - h - 5
	hdr := appendStrHeader(dst[h:h], n) // writes over the gap
	if k := len(hdr); k < 5 {
		copy(dst[h+k:], dst[h+5:])
		dst = dst[:len(dst)-(5-k)]
	}
	return dst, j, cOK
}

func isASCII(b []byte) bool {
	var acc uint64
	k := 0
	for ; k+8 <= len(b); k += 8 {
		acc |= load64(b, k)
	}
	for ; k < len(b); k++ {
		acc |= uint64(b[k])
	}
	return acc&hi8 == 0
}

func appendStrHeader(dst []byte, n int) []byte {
	switch {
	case n < 32:
		return append(dst, 0xa0|byte(n))
	case n < 1<<8:
		return append(dst, 0xd9, byte(n))
	case n < 1<<16:
		return append(dst, 0xda, byte(n>>8), byte(n))
	}
	return append(dst, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// appendNumber appends a valid JSON number literal. It reports false when
// the number is outside float64's range.
func appendNumber(dst, lit []byte) ([]byte, bool) {
	neg := lit[0] == '-'
	digits := lit
	if neg {
		digits = lit[1:]
	}
	isInt := true
	var u uint64
	for _, c := range digits {
		d := uint64(c - '0')
		if d >= 10 {
			isInt = false
			break
		}
		if u > (math.MaxUint64-d)/10 {
			isInt = false // does not fit: a float, like encoding/json's
			break
		}
		u = u*10 + d
	}
	if isInt {
		if !neg {
			return appendUint(dst, u), true
		}
		if u <= 1<<63 {
			return appendInt(dst, -int64(u)), true // -1<<63 wraps to itself
		}
	}
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(lit), len(lit)), 64)
	if err != nil {
		return dst, false
	}
	return append(dst, 0xcb, byte(math.Float64bits(f)>>56), byte(math.Float64bits(f)>>48),
		byte(math.Float64bits(f)>>40), byte(math.Float64bits(f)>>32), byte(math.Float64bits(f)>>24),
		byte(math.Float64bits(f)>>16), byte(math.Float64bits(f)>>8), byte(math.Float64bits(f))), true
}

func appendUint(dst []byte, u uint64) []byte {
	switch {
	case u < 1<<7:
		return append(dst, byte(u))
	case u < 1<<8:
		return append(dst, 0xcc, byte(u))
	case u < 1<<16:
		return append(dst, 0xcd, byte(u>>8), byte(u))
	case u < 1<<32:
		return append(dst, 0xce, byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xcf), u)
}

func appendInt(dst []byte, v int64) []byte {
	switch {
	case v >= 0:
		return appendUint(dst, uint64(v))
	case v >= -32:
		return append(dst, byte(v))
	case v >= math.MinInt8:
		return append(dst, 0xd0, byte(v))
	case v >= math.MinInt16:
		return append(dst, 0xd1, byte(v>>8), byte(v))
	case v >= math.MinInt32:
		return append(dst, 0xd2, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xd3), uint64(v))
}

// compactMsgpack rewrites the placeholder container headers in
// dst[start:] to their compact forms in place, moving the bytes between them
// down, and returns the shortened buffer.
func compactMsgpack(dst []byte, start int) []byte {
	r, w := start, start
	run := start // dst[run:r] is copied verbatim to w at the next placeholder
	for r < len(dst) {
		tag := dst[r]
		if tag != phMap && tag != phArray {
			r += tokenLen(dst, r)
			continue
		}
		w += copy(dst[w:], dst[run:r])
		n := binary.BigEndian.Uint32(dst[r+1:])
		switch {
		case n < 16 && tag == phMap:
			dst[w] = 0x80 | byte(n)
			w++
		case n < 16:
			dst[w] = 0x90 | byte(n)
			w++
		case n < 1<<16:
			dst[w] = 0xde // map16
			if tag == phArray {
				dst[w] = 0xdc // array16
			}
			dst[w+1], dst[w+2] = byte(n>>8), byte(n)
			w += 3
		default:
			dst[w] = tag
			binary.BigEndian.PutUint32(dst[w+1:], n)
			w += 5
		}
		r += phLen
		run = r
	}
	w += copy(dst[w:], dst[run:r])
	return dst[:w]
}

// tokenLen returns the length of the scalar msgpack token at dst[r], as
// written by transcode.
func tokenLen(dst []byte, r int) int {
	switch tag := dst[r]; {
	case tag < 0x80 || tag >= 0xe0 || tag == 0xc0 || tag == 0xc2 || tag == 0xc3:
		return 1
	case tag&0xe0 == 0xa0:
		return 1 + int(tag&31)
	case tag == 0xcc || tag == 0xd0:
		return 2
	case tag == 0xcd || tag == 0xd1:
		return 3
	case tag == 0xce || tag == 0xd2:
		return 5
	case tag == 0xcf || tag == 0xd3 || tag == 0xcb:
		return 9
	case tag == 0xd9:
		return 2 + int(dst[r+1])
	case tag == 0xda:
		return 3 + int(binary.BigEndian.Uint16(dst[r+1:]))
	case tag == 0xdb:
		return 5 + int(binary.BigEndian.Uint32(dst[r+1:]))
	}
	panic("parser: unexpected msgpack tag " + strconv.Itoa(int(dst[r])))
}
