package fluentd

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// The receiver only ever sends small messages to a client: HELO, PONG and
// {"ack": chunk}. readValue decodes one msgpack value from such a message
// into nil, bool, int64, uint64, float64, string (str), []byte (bin), []any
// or map[string]any. Anything larger than these limits is a protocol error,
// so that a confused peer cannot make the client allocate without bound.
const (
	maxRespString = 64 << 10
	maxRespItems  = 64
	maxRespDepth  = 4
)

var errProtocol = errors.New("unexpected msgpack from the receiver")

func readValue(r *bufio.Reader, depth int) (any, error) {
	if depth > maxRespDepth {
		return nil, fmt.Errorf("%w: nested too deeply", errProtocol)
	}
	c, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	case c&0xf0 == 0x80:
		return readMap(r, int(c&0x0f), depth)
	case c&0xf0 == 0x90:
		return readArray(r, int(c&0x0f), depth)
	case c&0xe0 == 0xa0:
		b, err := readN(r, int(c&0x1f))
		return string(b), err
	}
	switch c {
	case 0xc0:
		return nil, nil
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	case 0xc4, 0xd9: // bin8, str8
		return readSized(r, c, 1)
	case 0xc5, 0xda: // bin16, str16
		return readSized(r, c, 2)
	case 0xc6, 0xdb: // bin32, str32
		return readSized(r, c, 4)
	case 0xca:
		b, err := readN(r, 4)
		if err != nil {
			return nil, err
		}
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
	case 0xcb:
		b, err := readN(r, 8)
		if err != nil {
			return nil, err
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
	case 0xcc, 0xcd, 0xce, 0xcf:
		b, err := readN(r, 1<<(c-0xcc))
		if err != nil {
			return nil, err
		}
		return uint64(beUint(b)), nil
	case 0xd0, 0xd1, 0xd2, 0xd3:
		n := 1 << (c - 0xd0)
		b, err := readN(r, n)
		if err != nil {
			return nil, err
		}
		v := beUint(b)
		shift := 64 - 8*n
		return int64(v<<shift) >> shift, nil
	case 0xdc, 0xdd, 0xde, 0xdf:
		size := 2
		if c == 0xdd || c == 0xdf {
			size = 4
		}
		b, err := readN(r, size)
		if err != nil {
			return nil, err
		}
		if c <= 0xdd {
			return readArray(r, int(beUint(b)), depth)
		}
		return readMap(r, int(beUint(b)), depth)
	}
	return nil, fmt.Errorf("%w: type byte 0x%02x", errProtocol, c)
}

func beUint(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

func readSized(r *bufio.Reader, c byte, size int) (any, error) {
	b, err := readN(r, size)
	if err != nil {
		return nil, err
	}
	n := beUint(b)
	if n > maxRespString {
		return nil, fmt.Errorf("%w: %d-byte string", errProtocol, n)
	}
	p, err := readN(r, int(n))
	if err != nil {
		return nil, err
	}
	if c == 0xc4 || c == 0xc5 || c == 0xc6 {
		return p, nil
	}
	return string(p), nil
}

func readN(r *bufio.Reader, n int) ([]byte, error) {
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, noEOF(err)
	}
	return p, nil
}

// noEOF turns an EOF inside a value into ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func readArray(r *bufio.Reader, n, depth int) (any, error) {
	if n > maxRespItems {
		return nil, fmt.Errorf("%w: array of %d items", errProtocol, n)
	}
	a := make([]any, n)
	for i := range a {
		v, err := readValue(r, depth+1)
		if err != nil {
			return nil, noEOF(err)
		}
		a[i] = v
	}
	return a, nil
}

func readMap(r *bufio.Reader, n, depth int) (any, error) {
	if n > maxRespItems {
		return nil, fmt.Errorf("%w: map of %d items", errProtocol, n)
	}
	m := make(map[string]any, n)
	for range n {
		k, err := readValue(r, depth+1)
		if err != nil {
			return nil, noEOF(err)
		}
		v, err := readValue(r, depth+1)
		if err != nil {
			return nil, noEOF(err)
		}
		m[asString(k)] = v
	}
	return m, nil
}

// asString returns a str or bin value as a string, else "".
func asString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}
