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
	"strconv"
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
// dir/audit-<timestamp>.log and dir/audit-<timestamp>.log.gz. logrotate's
// names are recognised too: dir/audit.log.1 (numbered) and
// dir/audit.log-20261202 (dateext), each optionally .gz.
type logName struct {
	live   string // the live path
	dir    string
	base   string // "audit.log"
	prefix string // "audit-"
	ext    string // ".log"
	isize  *isizeCache
}

func newLogName(path string) logName {
	base := filepath.Base(path)
	ext := filepath.Ext(base)
	return logName{live: path, dir: filepath.Dir(path), base: base, prefix: base[:len(base)-len(ext)] + "-", ext: ext, isize: &isizeCache{}}
}

// backupName is what the name of a backup says about it.
type backupName struct {
	ts  time.Time // rotation time; zero for a logrotate number
	seq int       // logrotate's number: 1 is the newest; 0 for a named time
	// coarse: the time is a day or an hour (dateext), not when the file
	// was rotated.
	coarse bool
	gz     bool
}

// parseBackup reports whether name (a base name) is a backup of the live
// file: lumberjack's audit-<time>.log, logrotate's audit.log.<n> or
// audit.log-<date> (dateext: %Y%m%d, %Y%m%d%H or %Y%m%d-%s), each
// optionally .gz.
func (n logName) parseBackup(name string) (backupName, bool) {
	var b backupName
	if rest, found := strings.CutSuffix(name, ".gz"); found {
		name, b.gz = rest, true
	}
	if rest, ok := strings.CutPrefix(name, n.base+"."); ok {
		seq, err := strconv.Atoi(rest)
		if err != nil || seq < 1 || rest[0] < '1' || rest[0] > '9' {
			return backupName{}, false
		}
		b.seq = seq
		return b, true
	}
	if rest, ok := strings.CutPrefix(name, n.base+"-"); ok {
		ts, ok := parseDateext(rest)
		if !ok {
			return backupName{}, false
		}
		b.ts, b.coarse = ts, !strings.Contains(rest, "-")
		return b, true
	}
	if !strings.HasPrefix(name, n.prefix) || !strings.HasSuffix(name, n.ext) {
		return backupName{}, false
	}
	stamp := name[len(n.prefix) : len(name)-len(n.ext)]
	if len(stamp) != len(backupTimeFormat) {
		return backupName{}, false
	}
	ts, err := time.Parse(backupTimeFormat, stamp)
	if err != nil {
		return backupName{}, false
	}
	b.ts = ts
	return b, true
}

// parseDateext parses the date logrotate's dateext appends: 20261202,
// 2026120215, or 20261202-<unix seconds> (the exact time).
func parseDateext(s string) (time.Time, bool) {
	day, secs, hasSecs := strings.Cut(s, "-")
	if len(day) != 8 && len(day) != 10 || !allDigits(day) || hasSecs && (secs == "" || !allDigits(secs)) {
		return time.Time{}, false
	}
	layout := "20060102"
	if len(day) == 10 {
		layout = "2006010215"
	}
	ts, err := time.Parse(layout, day)
	if err != nil {
		return time.Time{}, false
	}
	if hasSecs {
		if len(day) != 8 {
			return time.Time{}, false
		}
		n, err := strconv.ParseInt(secs, 10, 64)
		if err != nil {
			return time.Time{}, false
		}
		ts = time.Unix(n, 0).UTC()
	}
	return ts, true
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
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
	// Seq is logrotate's number in the name (1 is the newest), 0 for a
	// name with a time; TS is then the file's modification time, made to
	// increase from the highest number to the lowest.
	Seq int `json:"-"`
	// Coarse: the time in the name is a day or an hour (logrotate's
	// dateext): ModTime tells when the file was written.
	Coarse bool `json:"-"`
	// ModTime is the modification time at listing time.
	ModTime time.Time `json:"-"`
	// fp is the fingerprint of the file's head, if fpRead; it may be
	// empty then (the first line is not complete yet).
	fp     fingerprint
	fpRead bool
}

// list returns the input's backups in rotation order, oldest first, then the
// live file if it exists (see sortListing).
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
		b, ok := n.parseBackup(name)
		if !ok && !isLive {
			continue
		}
		info, err := e.Info()
		if err != nil && ok && !b.gz {
			// Compressed since ReadDir (the .gz written, then the plain
			// file removed): without its twin it would be missing.
			if zi, zerr := os.Lstat(filepath.Join(n.dir, name+".gz")); zerr == nil {
				name, info, err, b.gz = name+".gz", zi, nil, true
			}
		}
		if err != nil {
			continue // removed since ReadDir
		}
		if !info.Mode().IsRegular() {
			continue
		}
		dev, ino := ID(info)
		ref := Ref{Path: filepath.Join(n.dir, name), TS: b.ts, GZ: b.gz, Seq: b.seq, Coarse: b.coarse, Live: isLive, Size: info.Size(), Dev: dev, Ino: ino, ModTime: info.ModTime()}
		if ref.Seq > 0 {
			ref.TS = ref.ModTime.UTC()
		}
		if ref.GZ {
			ref.Bytes = n.isize.get(ref.Path, ref.Size)
		}
		if isLive {
			live = &ref
			continue
		}
		files = append(files, ref)
	}
	return sortListing(files, live), nil
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

// fpCache remembers the fingerprints of backups by path, inode, size and
// modification time, so that listing a directory reads each head once.
type fpCache struct {
	m map[fpKey]fingerprint
}

type fpKey struct {
	path     string
	dev, ino uint64
	size     int64
	mtime    time.Time
}

// fill sets the fingerprint of every backup of files (and of the live
// file, with live; it is never cached: copytruncate rewrites it in place).
// A plain backup gone since it was listed is read as its .gz twin. The
// cache keeps the entries of this call only.
func (c *fpCache) fill(files []Ref, live bool) {
	m := make(map[fpKey]fingerprint, len(files))
	for i := range files {
		ref := &files[i]
		if ref.Live && !live {
			continue
		}
		k := fpKey{ref.Path, ref.Dev, ref.Ino, ref.Size, ref.ModTime}
		if fp, ok := c.m[k]; ok && !ref.Live {
			ref.fp, ref.fpRead = fp, true
			m[k] = fp
			continue
		}
		fp, err := readFingerprint(ref.Path, ref.GZ)
		if err == nil && !ref.Live {
			m[k] = fp
		}
		if errors.Is(err, os.ErrNotExist) && !ref.GZ && !ref.Live {
			fp, err = readFingerprint(ref.Path+".gz", true) // compressed meanwhile
		}
		ref.fp, ref.fpRead = fp, err == nil
	}
	c.m = m
}
