package file

import (
	"slices"
	"time"
)

// File discovery and identity: which files of a listing come after a
// position, which one a cursor names, which vanished, which are copies.
// These are decisions over a listing ([]Ref, fingerprints filled in by
// fpCache.fill), with no I/O: the follower lists the directory, then asks.

// placed is what discovery knows of a file the follower opened.
type placed struct {
	ref Ref // as listed; Dev and Ino from the open file
	fp  fingerprint
	// order is ref.TS for a backup; when it was opened for the live file.
	order time.Time
}

// sortListing orders a directory's backups oldest first, then the live
// file if there is one. A backup present both plain and gzipped (while it
// is compressed) is listed once, as the plain file, which is complete; the
// .gz is complete only once the plain copy is gone.
//
// Backups are ordered by their rotation times; logrotate's numbered ones
// (higher number = older) have none in their names: their modification
// times stand in, made to increase from the highest number to the lowest
// (a nanosecond apart at least) so that both orders agree.
func sortListing(backups []Ref, live *Ref) []Ref {
	plainFirst := func(a, b Ref) int {
		if a.GZ != b.GZ {
			if a.GZ {
				return 1
			}
			return -1
		}
		return 0
	}
	var numbered, named []Ref
	for _, ref := range backups {
		if ref.Seq > 0 {
			numbered = append(numbered, ref)
		} else {
			named = append(named, ref)
		}
	}
	slices.SortFunc(numbered, func(a, b Ref) int {
		if a.Seq != b.Seq {
			return b.Seq - a.Seq
		}
		return plainFirst(a, b)
	})
	numbered = slices.CompactFunc(numbered, func(a, b Ref) bool { return a.Seq == b.Seq })
	for i := 1; i < len(numbered); i++ {
		if next := numbered[i-1].TS.Add(time.Nanosecond); numbered[i].TS.Before(next) {
			numbered[i].TS = next
		}
	}
	slices.SortFunc(named, func(a, b Ref) int {
		if c := a.TS.Compare(b.TS); c != 0 {
			return c
		}
		return plainFirst(a, b)
	})
	named = slices.CompactFunc(named, func(a, b Ref) bool { return a.TS.Equal(b.TS) })
	files := append(named, numbered...)
	slices.SortStableFunc(files, func(a, b Ref) int { return a.TS.Compare(b.TS) })
	if live != nil {
		files = append(files, *live)
	}
	return files
}

// liveFile returns the live file of a listing.
func liveFile(files []Ref) (Ref, bool) {
	for _, ref := range files {
		if ref.Live {
			return ref, true
		}
	}
	return Ref{}, false
}

// newestBackup returns the rotation time of the newest backup; zero if
// there is none.
func newestBackup(files []Ref) time.Time {
	var ts time.Time
	for _, ref := range files {
		if !ref.Live && ref.TS.After(ts) {
			ts = ref.TS
		}
	}
	return ts
}

// fromFloor returns the backups rotated at or after floor, oldest first,
// and the live file last.
func fromFloor(files []Ref, floor time.Time) []Ref {
	var out []Ref
	for _, ref := range files {
		if ref.Live || !ref.TS.Before(floor) {
			out = append(out, ref)
		}
	}
	return out
}

// backupsAfter returns the backups rotated after ref (none if ref is the
// live file), oldest first, and the live file last with live.
func backupsAfter(files []Ref, ref Ref, live bool) []Ref {
	if ref.Live {
		return nil
	}
	var out []Ref
	for _, r := range files {
		if (!r.Live && r.TS.After(ref.TS)) || (live && r.Live) {
			out = append(out, r)
		}
	}
	return out
}

// ownBackup finds a file opened as the live file among the backups: the
// plain backup with its device and inode, else (compressed since) a .gz
// rotated after it was opened with its fingerprint.
func ownBackup(files []Ref, self placed) (Ref, bool) {
	for _, ref := range files {
		if !ref.Live && !ref.GZ && ref.Dev == self.ref.Dev && ref.Ino == self.ref.Ino {
			return ref, true
		}
	}
	if !self.fp.ready() {
		return Ref{}, false
	}
	since := self.order.Truncate(time.Millisecond)
	for _, ref := range files {
		if ref.GZ && !ref.TS.Before(since) && ref.fp == self.fp {
			return ref, true
		}
	}
	return Ref{}, false
}

// filesAfter returns the files that come after prev (after floor when
// prev is nil), oldest first, the live file last. When prev was opened as
// the live file, own is its rotation time if it is found among the
// backups (known); if it was deleted, everything rotated since it was
// opened is newer.
func filesAfter(files []Ref, prev *placed, floor time.Time) (out []Ref, own time.Time, known bool) {
	switch {
	case prev == nil:
		return fromFloor(files, floor), time.Time{}, false
	case !prev.ref.Live:
		return backupsAfter(files, prev.ref, true), time.Time{}, false
	}
	if ref, ok := ownBackup(files, *prev); ok {
		own, known = ref.TS, true
	}
	for _, ref := range files {
		switch {
		case ref.Live:
			out = append(out, ref)
		case known && ref.TS.After(own):
			out = append(out, ref)
		case !known && !ref.TS.Before(prev.order):
			out = append(out, ref)
		}
	}
	return out, own, known
}

// copiesOf returns the backups that hold lines older than the live file
// self, which was read from its start for the first time: copytruncate
// copies (named when the copy starts, so up to copySlack before self was
// opened) or a rotation that slipped between listing the directory and
// opening it; for a name with a day or an hour only, its modification
// time tells. It returns their number and the earliest rotation time.
//
// Backups not newer than lastBackup (the newest one read), self's own
// backup and files already read (done) are not copies; if self was
// rotated since it was opened, only backups rotated before it are.
func copiesOf(files []Ref, self placed, lastBackup time.Time, done *recentSet) (n int, first time.Time) {
	since := self.order.Add(-copySlack)
	own, rotated := ownBackup(files, self)
	for _, ref := range files {
		named := ref.TS
		if ref.Coarse {
			named = ref.ModTime // a dateext day says little of when
		}
		if ref.Live || named.Before(since) || !ref.TS.After(lastBackup) ||
			(rotated && !ref.TS.Before(own.TS)) ||
			(!ref.GZ && ref.Dev == self.ref.Dev && ref.Ino == self.ref.Ino) {
			continue
		}
		if !ref.fpRead || ref.fp == self.fp || done.has(ref.fp) {
			continue // unreadable, our own file compressed, or one already read
		}
		if n == 0 || ref.TS.Before(first) {
			first = ref.TS
		}
		n++
	}
	return n, first
}

// findByFingerprint returns the index of the first file whose first line
// has fingerprint fp, among the backups rotated at or after since (and the
// live file, with live), or -1. Every audit line carries a unique auditID,
// so the first line identifies a file wherever it was renamed, copied or
// compressed to.
func findByFingerprint(files []Ref, fp fingerprint, since time.Time, live bool) int {
	if !fp.ready() {
		return -1
	}
	for i, ref := range files {
		if ref.Live && !live || !ref.Live && !ref.TS.IsZero() && ref.TS.Before(since) {
			continue
		}
		if ref.fp == fp {
			return i
		}
	}
	return -1
}

// vanished returns the backups of pending that files no longer lists, by
// rotation time or (logrotate renumbers, compression may change
// modification times) by fingerprint.
func vanished(pending, files []Ref) []Ref {
	var out []Ref
	for _, p := range pending {
		if !slices.ContainsFunc(files, func(ref Ref) bool {
			return !ref.Live && (ref.TS.Equal(p.TS) || p.fp.ready() && ref.fp == p.fp)
		}) {
			out = append(out, p)
		}
	}
	return out
}
