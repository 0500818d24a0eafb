package file

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"sync"
	"time"
)

// stageKey precedes an event's stageTimestamp in an audit line.
var stageKey = []byte(`"stageTimestamp":"`)

// stageTS returns the stageTimestamp of an audit line, or "" if it has
// none. A byte search, not a parse: it runs once per chunk and per gap.
func stageTS(line []byte) string {
	i := bytes.Index(line, stageKey)
	if i < 0 {
		return ""
	}
	rest := line[i+len(stageKey):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || j > 64 {
		return ""
	}
	return string(rest[:j])
}

// gap is data lost between two events read: from is the stageTimestamp of
// the last event read before it, to (once known) that of the first after.
type gap struct {
	from  string
	files []string
	bytes int64
	whys  []string
	// deferred: noticed while reading a file that comes before the gap;
	// it opens when that file is finished.
	deferred bool
}

// lose counts n bytes of path (uncompressed, at least) as lost and opens
// (or extends) the gap the next line read closes.
func (f *follower) lose(path string, n int64, why string) {
	f.stats.LostFiles.Add(1)
	f.stats.LostBytes.Add(n)
	if f.gap == nil {
		f.gap = &gap{from: f.readTS()}
	}
	f.gap.files = append(f.gap.files, path)
	f.gap.bytes += n
	if len(f.gap.whys) == 0 || f.gap.whys[len(f.gap.whys)-1] != why {
		f.gap.whys = append(f.gap.whys, why)
	}
}

// readTS is the stageTimestamp of the last event read: the open chunk's
// last line, else the last chunk handed out (or the resumed cursor's).
func (f *follower) readTS() string {
	if c := f.chunks.cur; c != nil && c.Len() > 0 {
		if ts := stageTS(c.Line(c.Len() - 1)); ts != "" {
			return ts
		}
	}
	return f.lastTS
}

// closeGap reports the open gap, if any, as a window ending at to (the
// stageTimestamp of the first event after it; "" when unknown).
func (f *follower) closeGap(to string) {
	g := f.gap
	if g == nil {
		return
	}
	f.gap = nil
	from, until := g.from, to
	if from == "" {
		from = "unknown"
	}
	if until == "" {
		until = "unknown"
	}
	window := time.Duration(0)
	t0, err0 := time.Parse(time.RFC3339Nano, g.from)
	t1, err1 := time.Parse(time.RFC3339Nano, to)
	if err0 == nil && err1 == nil && t1.After(t0) {
		window = t1.Sub(t0)
		f.stats.LostWindowNanos.Add(int64(window))
	}
	f.log.Warn("data lost: "+strings.Join(g.whys, "; "),
		"from", from, "to", until, "window_seconds", window.Seconds(),
		"files", g.files, "lost_bytes", g.bytes)
}

// isizeCache remembers the uncompressed size of .gz files by path and
// size, so that listing a directory reads each trailer once.
type isizeCache struct {
	mu sync.Mutex
	m  map[isizeKey]int64
}

type isizeKey struct {
	path string
	size int64
}

// get returns the uncompressed size of the gzip file path of the given
// (compressed) size: its ISIZE trailer, the last 4 bytes, little-endian
// (exact below 4 GiB). It falls back to size if the trailer is unreadable.
func (c *isizeCache) get(path string, size int64) int64 {
	if c == nil {
		return gzipISize(path, size)
	}
	k := isizeKey{path, size}
	c.mu.Lock()
	n, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return n
	}
	n = gzipISize(path, size)
	c.mu.Lock()
	if c.m == nil || len(c.m) > 4096 {
		c.m = make(map[isizeKey]int64)
	}
	c.m[k] = n
	c.mu.Unlock()
	return n
}

func gzipISize(path string, size int64) int64 {
	f, err := os.Open(path)
	if err != nil || size < 4 {
		return size
	}
	defer f.Close()
	var b [4]byte
	if _, err := f.ReadAt(b[:], size-4); err != nil {
		return size
	}
	return plausibleISize(int64(binary.LittleEndian.Uint32(b[:])), size)
}

// plausibleISize returns isize, the trailer of a gzip file of size
// bytes, if deflate could have produced the file from that many bytes;
// otherwise size (a torn file's last 4 bytes are not its trailer).
// Deflate grows incompressible data by a few bytes per stored block (up
// to 65,535 bytes; encoders pick smaller ones), the gzip header and trailer
// add 18 or more: 1% and 64 bytes bound that. It shrinks at most 1,032 to 1. ISIZE is the size modulo
// 2^32, so files over 4 GiB uncompressed fall back to size as well.
func plausibleISize(isize, size int64) int64 {
	overhead := 64 + size/100
	if isize < size-overhead || isize > size*1032 {
		return size
	}
	return isize
}
