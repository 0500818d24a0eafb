package fluentd

import (
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"slices"
	"sync/atomic"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/parser"
)

// encoder builds PackedForward and CompressedPackedForward messages in
// buffers it keeps from one batch to the next. Not safe for concurrent use.
type encoder struct {
	head []byte // msgpack [fixarray(3), tag]: the message's first bytes
	gzip bool

	msg     []byte // headroom, then the event stream and the options
	entries []byte // the uncompressed event stream (gzip only)
	zw      *gzip.Writer
	zbuf    appendWriter // zw's destination
	ev      parser.Event

	// maxRecord bounds one event: a longer one is sent without its objects
	// (outputs.CutObjects), or not at all (rejected) if still too long.
	maxRecord int
	cut       []byte
	rejected  []int // lines of the last batch left out
	// truncated counts the events sent cut. It is atomic because the
	// metrics collector reads it (Output.Truncated) while a Send holds the
	// output's lock, possibly for a whole ack_timeout.
	truncated atomic.Int64
}

// headroom leaves space before the event stream for head and a bin32 header.
func (e *encoder) headroom() int { return len(e.head) + 5 }

func newEncoder(tag string, gz bool) *encoder {
	e := &encoder{gzip: gz}
	e.head = append(e.head, 0x93)
	e.head = appendStr(e.head, tag)
	if gz {
		e.zw, _ = gzip.NewWriterLevel(nil, gzip.BestSpeed)
	}
	return e
}

// encode returns the message for b with chunk as its chunk option. The
// result aliases the encoder's buffer until the next call.
func (e *encoder) encode(b *outputs.Batch, chunk []byte, now time.Time) []byte {
	h := e.headroom()
	e.msg = slices.Grow(e.msg[:0], h+b.Size()+b.Len()*16)[:h]
	if !e.gzip {
		e.msg = e.appendEntries(e.msg, b, now)
	} else {
		e.entries = e.appendEntries(e.entries[:0], b, now)
		e.zbuf.b = e.msg
		e.zw.Reset(&e.zbuf)
		e.zw.Write(e.entries) // writes to memory cannot fail
		e.zw.Close()
		e.msg, e.zbuf.b = e.zbuf.b, nil
	}
	n := len(e.msg) - h
	var bin [5]byte
	hdr := bin[:0]
	switch {
	case n < 1<<8:
		hdr = append(hdr, 0xc4, byte(n))
	case n < 1<<16:
		hdr = append(hdr, 0xc5, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, 0xc6, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	start := h - len(hdr) - len(e.head)
	copy(e.msg[start:], e.head)
	copy(e.msg[start+len(e.head):], hdr)

	// Options: {"chunk": id, "size": n[, "compressed": "gzip"]}.
	if e.gzip {
		e.msg = append(e.msg, 0x83)
	} else {
		e.msg = append(e.msg, 0x82)
	}
	e.msg = appendStr(e.msg, "chunk")
	e.msg = appendStrBytes(e.msg, chunk)
	e.msg = appendStr(e.msg, "size")
	e.msg = appendUint(e.msg, uint64(b.Len()-len(e.rejected)))
	if e.gzip {
		e.msg = appendStr(e.msg, "compressed")
		e.msg = appendStr(e.msg, "gzip")
	}
	return e.msg[start:]
}

// appendEntries appends one [EventTime, record] entry per line of b,
// leaving out (in e.rejected) the lines too long even when cut.
func (e *encoder) appendEntries(dst []byte, b *outputs.Batch, now time.Time) []byte {
	e.rejected = e.rejected[:0]
	for i := range b.Len() {
		line := b.Line(i)
		if e.maxRecord > 0 && len(line) > e.maxRecord {
			ev := b.Event(i)
			if ev == nil {
				e.rejected = append(e.rejected, i)
				continue
			}
			var ok bool
			e.cut, ok = outputs.CutObjects(e.cut[:0], line, ev, e.maxRecord)
			if !ok || len(e.cut) > e.maxRecord {
				e.rejected = append(e.rejected, i)
				continue
			}
			line = e.cut
			e.truncated.Add(1)
		}
		sec, nsec := e.eventTime(b, i, line, now)
		dst = append(dst, 0x92, 0xd7, 0x00)
		dst = binary.BigEndian.AppendUint32(dst, sec)
		dst = binary.BigEndian.AppendUint32(dst, nsec)
		// AppendMsgpack does not allocate when dst has about 3x the line.
		dst = slices.Grow(dst, 3*len(line)+64)
		rec, err := parser.AppendMsgpack(dst, line)
		if err != nil {
			// Not a JSON object: send it whole rather than lose it.
			dst = append(dst, 0x81)
			dst = appendStr(dst, "message")
			rec = appendStrBytes(dst, line)
		}
		dst = rec
	}
	return dst
}

// eventTime returns the time of line i: its stageTimestamp, else its
// requestReceivedTimestamp, else now.
func (e *encoder) eventTime(b *outputs.Batch, i int, line []byte, now time.Time) (uint32, uint32) {
	ev := b.Event(i)
	if ev == nil {
		// The batch was not parsed (or the line is not an event).
		if parser.Scan(line, &e.ev) == nil {
			ev = &e.ev
		}
	}
	if ev != nil {
		if s, ns, ok := parseTimestamp(ev.StageTimestamp); ok {
			return s, ns
		}
		if s, ns, ok := parseTimestamp(ev.RequestReceivedTimestamp); ok {
			return s, ns
		}
	}
	return uint32(now.Unix()), uint32(now.Nanosecond())
}

// parseTimestamp parses a raw JSON string holding an RFC 3339 time, as
// metav1.MicroTime writes it, into EventTime's seconds and nanoseconds. It
// reports false for an absent or invalid time (see parser.ParseTime), or one
// EventTime cannot hold (before 1970 or after 2106).
func parseTimestamp(raw []byte) (uint32, uint32, bool) {
	t, err := parser.ParseTime(raw)
	if err != nil {
		return 0, 0, false
	}
	sec := t.Unix()
	if sec < 0 || sec > 1<<32-1 {
		return 0, 0, false
	}
	return uint32(sec), uint32(t.Nanosecond()), true
}

// newChunk writes a fresh chunk id, base64 of 16 random bytes, into dst.
func newChunk(dst *[24]byte) {
	var id [16]byte
	rand.Read(id[:])
	base64.StdEncoding.Encode(dst[:], id[:])
}

// appendWriter is an io.Writer that appends to b.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func appendStr(dst []byte, s string) []byte {
	dst = appendStrHeader(dst, len(s))
	return append(dst, s...)
}

func appendStrBytes(dst []byte, s []byte) []byte {
	dst = appendStrHeader(dst, len(s))
	return append(dst, s...)
}

func appendStrHeader(dst []byte, n int) []byte {
	switch {
	case n < 32:
		return append(dst, 0xa0|byte(n))
	case n < 1<<8:
		return append(dst, 0xd9, byte(n))
	case n < 1<<16:
		return append(dst, 0xda, byte(n>>8), byte(n))
	default:
		return append(dst, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

func appendUint(dst []byte, v uint64) []byte {
	switch {
	case v < 128:
		return append(dst, byte(v))
	case v < 1<<8:
		return append(dst, 0xcc, byte(v))
	case v < 1<<16:
		return append(dst, 0xcd, byte(v>>8), byte(v))
	case v < 1<<32:
		return append(dst, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 0xcf), v)
	}
}

// appendArrayHeader appends a msgpack array header for n elements.
func appendArrayHeader(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x90|byte(n))
	case n < 1<<16:
		return append(dst, 0xdc, byte(n>>8), byte(n))
	default:
		return append(dst, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}
