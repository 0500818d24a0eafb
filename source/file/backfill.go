package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// BackfillGroup is the files of one log, in the order they are read.
type BackfillGroup struct {
	Live  string // the live path the files belong to (the checkpoint key)
	Files []Ref
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

// BackfillGroups finds the files to backfill. With no paths, every
// input (inputs) contributes its backups and live file. Paths (globs
// allowed) are grouped by the live file their lumberjack name belongs to
// (dir/audit-<time>.log.gz belongs to dir/audit.log); a name that is not a
// lumberjack backup is read as a live file of its own.
func BackfillGroups(inputs, paths []string) ([]BackfillGroup, error) {
	var groups []BackfillGroup
	if len(paths) == 0 {
		for _, in := range inputs {
			files, err := newLogName(in).list()
			if err != nil && !os.IsNotExist(err) {
				return nil, fmt.Errorf("cannot list %s: %w", filepath.Dir(in), err)
			}
			for i := range files {
				files[i].Live = false
			}
			if len(files) > 0 {
				groups = append(groups, BackfillGroup{Live: in, Files: files})
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
			dev, ino := ID(info)
			g.Files = append(g.Files, Ref{Path: abs, TS: ts, GZ: gz, Size: info.Size(), Dev: dev, Ino: ino})
		}
	}
	for _, live := range order {
		g := byLive[live]
		// Rotation order; the live file (no timestamp) last; a plain backup
		// and its .gz twin are one file: keep the plain one.
		slices.SortFunc(g.Files, func(a, b Ref) int {
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
		g.Files = slices.CompactFunc(g.Files, func(a, b Ref) bool {
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

// resolveFixed starts a backfill: at the checkpointed file and offset if
// the cursor names one of the files, else at the first file.
func (f *follower) resolveFixed(c *Cursor) error {
	if c != nil && c.FP.ready() {
		f.fps.fill(f.fixed, true)
		if i := findByFingerprint(f.fixed, c.FP, time.Time{}, true); i >= 0 {
			ref := f.fixed[i]
			s, err := f.open(ref, c.Offset)
			if err != nil {
				return err
			}
			s.fp = c.FP
			s.capped, s.limit = !ref.GZ, ref.Size
			f.fixedAt = i
			f.setCur(s)
			f.log.Info("resuming backfill", "path", ref.Path, "offset", c.Offset, "files_left", len(f.fixed)-i)
			return nil
		}
	}
	f.fixedAt = -1
	return f.nextFixed()
}

// nextFixed moves to the next file of a backfill; errStop after the last.
func (f *follower) nextFixed() error {
	if f.cur != nil {
		if f.end > f.start && !f.skipping {
			f.stats.TornLines.Add(1)
			f.log.Warn("file ends with an incomplete line; skipping it", "path", f.cur.ref.Path, "bytes", f.end-f.start)
		}
		f.chunks.flush(false)
		f.cur.close()
		f.cur = nil
		f.stats.Rotations.Add(1)
	}
	for f.fixedAt+1 < len(f.fixed) {
		f.fixedAt++
		ref := f.fixed[f.fixedAt]
		s, err := f.open(ref, 0)
		if errors.Is(err, os.ErrNotExist) {
			f.lose(ref.Path, ref.lostSize(), "a file to backfill was deleted before it was read")
			continue
		}
		if err != nil {
			return err
		}
		// The live file may grow: stop at its size at start.
		s.capped, s.limit = !ref.GZ, ref.Size
		f.setCur(s)
		return nil
	}
	return errStop
}

// backfillLoop reads the fixed files in order, each to its end, then
// returns errStop. Unlike loop it waits for nothing: a backfill is bounded.
func (f *follower) backfillLoop(ctx context.Context) error {
	for f.cur != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := f.read()
		if n > 0 {
			if f.cur.base == 0 && !f.cur.fp.ready() {
				f.cur.fp = fingerprintOf(f.buf[f.start:f.end])
			}
			if err := f.scan(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			if f.cur.ref.GZ {
				f.log.Error("cannot read compressed file; skipping the rest of it", "path", f.cur.ref.Path, "error", err)
				f.stats.LostFiles.Add(1)
			} else {
				return fmt.Errorf("cannot read %s: %w", f.cur.ref.Path, err)
			}
		}
		if err := f.nextFixed(); err != nil {
			return err
		}
	}
	return errStop
}
