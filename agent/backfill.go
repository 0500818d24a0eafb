package agent

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Backfill makes an Agent read a fixed set of files once, instead of
// following inputs: rotated backups (plain and .gz) in rotation order, the
// live file last and only up to its size at start.
type Backfill struct {
	// Paths are files or globs; empty means every backup and the live file
	// of every configured input.
	Paths []string
	// Since and Until keep events whose stageTimestamp is in [Since, Until);
	// zero means unbounded. Events without a stageTimestamp are kept.
	Since, Until time.Time
	// DryRun reads, parses and filters but sends nothing and writes no
	// checkpoint.
	DryRun bool
	// GiveUpAfter ends the run with an error when an output has been
	// failing for this long (the next run resumes). 0 means never.
	GiveUpAfter time.Duration
}

// BackfillGroup is the files of one log, in the order they are read.
type BackfillGroup struct {
	Live  string // the live path the files belong to (the checkpoint key)
	Files []fileRef
}

// Paths returns the files of the group.
func (g BackfillGroup) Paths() []string {
	out := make([]string, len(g.Files))
	for i, f := range g.Files {
		out[i] = f.Path
	}
	return out
}

// EstimatedBytes returns the decompressed size of the group's files: a .gz
// file's size is read from its trailer (exact below 4 GiB).
func (g BackfillGroup) EstimatedBytes() int64 {
	var n int64
	for _, f := range g.Files {
		if !f.GZ {
			n += f.Size
			continue
		}
		n += gzipISize(f.Path, f.Size)
	}
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
	return int64(binary.LittleEndian.Uint32(b[:]))
}

// BackfillGroups finds the files to backfill. With no paths, every
// configured input contributes its backups and live file. Paths (globs
// allowed) are grouped by the live file their lumberjack name belongs to
// (dir/audit-<time>.log.gz belongs to dir/audit.log); a name that is not a
// lumberjack backup is read as a live file of its own.
func BackfillGroups(cfg *Config, paths []string) ([]BackfillGroup, error) {
	var groups []BackfillGroup
	if len(paths) == 0 {
		for _, in := range cfg.Inputs {
			files, err := newLogName(in.Path).list()
			if err != nil && !os.IsNotExist(err) {
				return nil, fmt.Errorf("cannot list %s: %w", filepath.Dir(in.Path), err)
			}
			for i := range files {
				files[i].Live = false
			}
			if len(files) > 0 {
				groups = append(groups, BackfillGroup{Live: in.Path, Files: files})
			}
		}
		return groups, nil
	}
	byLive := map[string]*BackfillGroup{}
	var order []string
	for _, pat := range paths {
		matches, err := filepath.Glob(pat)
		if err != nil {
			return nil, fmt.Errorf("bad pattern %q: %w", pat, err)
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("%s: no such file", pat)
		}
		for _, m := range matches {
			abs, err := filepath.Abs(m)
			if err != nil {
				return nil, err
			}
			info, err := os.Stat(abs)
			if err != nil {
				return nil, err
			}
			if !info.Mode().IsRegular() {
				return nil, fmt.Errorf("%s: not a regular file", abs)
			}
			live, ts, gz := liveOf(abs)
			g := byLive[live]
			if g == nil {
				g = &BackfillGroup{Live: live}
				byLive[live] = g
				order = append(order, live)
			}
			dev, ino := fileID(info)
			g.Files = append(g.Files, fileRef{Path: abs, TS: ts, GZ: gz, Size: info.Size(), Dev: dev, Ino: ino})
		}
	}
	for _, live := range order {
		g := byLive[live]
		// Rotation order; the live file (no timestamp) last; a plain backup
		// and its .gz twin are one file: keep the plain one.
		slices.SortFunc(g.Files, func(a, b fileRef) int {
			az, bz := a.TS.IsZero(), b.TS.IsZero()
			switch {
			case az != bz:
				if az {
					return 1
				}
				return -1
			case !a.TS.Equal(b.TS):
				return a.TS.Compare(b.TS)
			case a.GZ != b.GZ:
				if a.GZ {
					return 1
				}
				return -1
			}
			return strings.Compare(a.Path, b.Path)
		})
		g.Files = slices.CompactFunc(g.Files, func(a, b fileRef) bool {
			return a.Path == b.Path || (!a.TS.IsZero() && a.TS.Equal(b.TS))
		})
		groups = append(groups, *g)
	}
	return groups, nil
}

// liveOf returns the live path a file belongs to, its rotation time and
// whether it is gzipped.
func liveOf(path string) (string, time.Time, bool) {
	dir, base := filepath.Split(path)
	name := strings.TrimSuffix(base, ".gz")
	gz := name != base
	ext := filepath.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	if len(stem) > len(backupTimeFormat)+1 && stem[len(stem)-len(backupTimeFormat)-1] == '-' {
		if ts, err := time.Parse(backupTimeFormat, stem[len(stem)-len(backupTimeFormat):]); err == nil {
			return filepath.Join(dir, stem[:len(stem)-len(backupTimeFormat)-1]+ext), ts, gz
		}
	}
	return path, time.Time{}, gz
}
