package file

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// backupTimeFormat is the timestamp lumberjack puts in a backup's name.
const backupTimeFormat = "2006-01-02T15-04-05.000"

// fingerprintMax bounds the bytes of the first line that identify a file.
const fingerprintMax = 1024

// logName splits a live log path the way lumberjack does, so that its
// backups can be recognised: dir/audit.log has backups
// dir/audit-<timestamp>.log and dir/audit-<timestamp>.log.gz.
type logName struct {
	live   string // the live path
	dir    string
	prefix string // "audit-"
	ext    string // ".log"
	isize  *isizeCache
}

func newLogName(path string) logName {
	base := filepath.Base(path)
	ext := filepath.Ext(base)
	return logName{live: path, dir: filepath.Dir(path), prefix: base[:len(base)-len(ext)] + "-", ext: ext, isize: &isizeCache{}}
}

// parseBackup reports whether name (a base name) is a lumberjack backup of
// the live file, with its rotation time and whether it is gzipped.
func (n logName) parseBackup(name string) (ts time.Time, gz, ok bool) {
	if rest, found := strings.CutSuffix(name, ".gz"); found {
		name, gz = rest, true
	}
	if !strings.HasPrefix(name, n.prefix) || !strings.HasSuffix(name, n.ext) {
		return time.Time{}, false, false
	}
	stamp := name[len(n.prefix) : len(name)-len(n.ext)]
	if len(stamp) != len(backupTimeFormat) {
		return time.Time{}, false, false
	}
	ts, err := time.Parse(backupTimeFormat, stamp)
	if err != nil {
		return time.Time{}, false, false
	}
	return ts, gz, true
}

// Ref is a file that belongs to an input: a backup or the live file.
type Ref struct {
	Path string    `json:"path"`
	TS   time.Time `json:"-"` // rotation time from the name; zero for the live file
	GZ   bool      `json:"-"`
	Live bool      `json:"-"`
	Size int64     `json:"size"` // at listing time; compressed size for .gz
	// Bytes is a .gz file's uncompressed size (its ISIZE trailer) at
	// listing time; 0 for plain files and when unknown.
	Bytes int64  `json:"bytes,omitempty"`
	Dev   uint64 `json:"-"`
	Ino   uint64 `json:"-"`
}

// list returns the input's backups in rotation order, oldest first, then the
// live file if it exists. A backup present both plain and gzipped (while
// lumberjack compresses it) is listed once, as the plain file, which is
// complete; the .gz is complete only once the plain copy is gone.
func (n logName) list() ([]Ref, error) {
	entries, err := os.ReadDir(n.dir)
	if err != nil {
		return nil, err
	}
	var files []Ref
	liveBase := filepath.Base(n.live)
	var live *Ref
	for _, e := range entries {
		name := e.Name()
		isLive := name == liveBase
		ts, gz, ok := n.parseBackup(name)
		if !ok && !isLive {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed since ReadDir
		}
		if !info.Mode().IsRegular() {
			continue
		}
		dev, ino := ID(info)
		ref := Ref{Path: filepath.Join(n.dir, name), TS: ts, GZ: gz, Live: isLive, Size: info.Size(), Dev: dev, Ino: ino}
		if gz {
			ref.Bytes = n.isize.get(ref.Path, ref.Size)
		}
		if isLive {
			live = &ref
			continue
		}
		files = append(files, ref)
	}
	slices.SortFunc(files, func(a, b Ref) int {
		if c := a.TS.Compare(b.TS); c != 0 {
			return c
		}
		// Plain before its .gz twin.
		if a.GZ != b.GZ {
			if a.GZ {
				return 1
			}
			return -1
		}
		return 0
	})
	files = slices.CompactFunc(files, func(a, b Ref) bool { return a.TS.Equal(b.TS) })
	if live != nil {
		files = append(files, *live)
	}
	return files, nil
}

// lostSize is how many bytes (uncompressed where known) losing ref
// loses.
func (r Ref) lostSize() int64 {
	if r.GZ && r.Bytes > 0 {
		return r.Bytes
	}
	return r.Size
}

// ID returns the device and inode of a file.
func ID(info os.FileInfo) (dev, ino uint64) {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0
}

// fingerprint identifies a file by its first line: every audit line carries a
// unique auditID, so two files with the same first line are the same file
// (renamed, copied or compressed). It is empty until the first line is
// complete (or fingerprintMax bytes long).
type fingerprint struct {
	Sum string `json:"sum,omitempty"` // hex sha256 of the first Len bytes
	Len int    `json:"len,omitempty"`
}

func (f fingerprint) ready() bool { return f.Len > 0 }

// fingerprintOf computes the fingerprint of a file's head.
func fingerprintOf(head []byte) fingerprint {
	n := bytes.IndexByte(head, '\n') + 1
	if n == 0 {
		if len(head) < fingerprintMax {
			return fingerprint{}
		}
		n = fingerprintMax
	}
	n = min(n, fingerprintMax)
	sum := sha256.Sum256(head[:n])
	return fingerprint{Sum: hex.EncodeToString(sum[:]), Len: n}
}

// readFingerprint reads the head of path (decompressing a .gz) and returns
// its fingerprint.
func readFingerprint(path string, gz bool) (fingerprint, error) {
	f, err := os.Open(path)
	if err != nil {
		return fingerprint{}, err
	}
	defer f.Close()
	var r io.Reader = f
	if gz {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return fingerprint{}, fmt.Errorf("cannot read gzip header of %s: %w", path, err)
		}
		r = zr
	}
	return fingerprintFrom(r)
}

func fingerprintFrom(r io.Reader) (fingerprint, error) {
	var buf [fingerprintMax]byte
	n, err := io.ReadFull(r, buf[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fingerprint{}, err
	}
	return fingerprintOf(buf[:n]), nil
}
