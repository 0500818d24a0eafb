package file

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// at is t0 plus n seconds.
func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

func fpOf(s string) fingerprint { return fingerprintOf([]byte(s + "\n")) }

// bk is a plain backup rotated at second n, inode 100+n, whose first line
// is "line-n".
func bk(n int) Ref {
	return Ref{Path: fmt.Sprintf("audit-%d.log", n), TS: at(n), Dev: 1, Ino: uint64(100 + n), fp: fpOf(fmt.Sprint("line-", n)), fpRead: true}
}

// gzOf is the backup compressed: another inode, the same fingerprint.
func gzOf(r Ref) Ref {
	r.Path += ".gz"
	r.GZ, r.Ino = true, r.Ino+1000
	return r
}

func live(ino uint64, head string) Ref {
	return Ref{Path: "audit.log", Live: true, Dev: 1, Ino: ino, fp: fpOf(head), fpRead: true}
}

func paths(refs []Ref) []string {
	out := []string{}
	for _, r := range refs {
		out = append(out, r.Path)
	}
	return out
}

func assertPaths(t *testing.T, got []Ref, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if g := paths(got); !slices.Equal(g, want) {
		t.Fatalf("got %q, want %q", g, want)
	}
}

func TestSortListing(t *testing.T) {
	l := live(1, "x")
	cases := []struct {
		name    string
		backups []Ref
		live    *Ref
		want    []string
	}{
		{"backups come oldest first and the live file last", []Ref{bk(3), bk(1), bk(2)}, &l, []string{"audit-1.log", "audit-2.log", "audit-3.log", "audit.log"}},
		{"a backup present plain and gzipped is listed once, as the plain file", []Ref{gzOf(bk(1)), bk(2), bk(1)}, &l, []string{"audit-1.log", "audit-2.log", "audit.log"}},
		{"a gzipped backup alone is listed", []Ref{gzOf(bk(1)), bk(2)}, nil, []string{"audit-1.log.gz", "audit-2.log"}},
		{"without a live file only the backups are listed", []Ref{bk(2), bk(1)}, nil, []string{"audit-1.log", "audit-2.log"}},
		{"an empty directory lists nothing", nil, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertPaths(t, sortListing(tc.backups, tc.live), tc.want...)
		})
	}
}

func TestFilesAfter(t *testing.T) {
	// The live file was opened at second 10 with inode 50.
	opened := placed{ref: live(50, "opened"), fp: fpOf("opened"), order: at(10)}
	itsBackup := Ref{Path: "audit-12.log", TS: at(12), Dev: 1, Ino: 50, fp: fpOf("opened"), fpRead: true}
	cases := []struct {
		name      string
		files     []Ref
		prev      *placed
		floor     time.Time
		want      []string
		wantOwn   time.Time
		wantKnown bool
	}{
		{
			name:  "with nothing read, the backups rotated at or after the floor come next",
			files: []Ref{bk(1), bk(2), bk(3), live(9, "new")}, floor: at(2),
			want: []string{"audit-2.log", "audit-3.log", "audit.log"},
		},
		{
			name:  "after a backup come the backups rotated after it",
			files: []Ref{bk(1), bk(2), bk(3), live(9, "new")}, prev: &placed{ref: bk(2), order: at(2)},
			want: []string{"audit-3.log", "audit.log"},
		},
		{
			name:  "a file read as the live file is found among the backups by its inode",
			files: []Ref{bk(5), bk(11), itsBackup, bk(13), live(9, "new")}, prev: &opened,
			want: []string{"audit-13.log", "audit.log"}, wantOwn: at(12), wantKnown: true,
		},
		{
			name:  "a file read as the live file and compressed since is found by its fingerprint",
			files: []Ref{bk(11), gzOf(itsBackup), bk(13), live(9, "new")}, prev: &opened,
			want: []string{"audit-13.log", "audit.log"}, wantOwn: at(12), wantKnown: true,
		},
		{
			name:  "a gzipped backup with its fingerprint rotated before it was opened is not it",
			files: []Ref{gzOf(Ref{Path: "audit-8.log", TS: at(8), fp: fpOf("opened"), fpRead: true}), bk(11), live(9, "new")}, prev: &opened,
			want: []string{"audit-11.log", "audit.log"},
		},
		{
			name:  "when the file read as the live file is gone, everything rotated since it was opened comes next",
			files: []Ref{bk(5), bk(11), bk(13), live(9, "new")}, prev: &opened,
			want: []string{"audit-11.log", "audit-13.log", "audit.log"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, own, known := filesAfter(tc.files, tc.prev, tc.floor)
			assertPaths(t, got, tc.want...)
			if known != tc.wantKnown || !own.Equal(tc.wantOwn) {
				t.Fatalf("own rotation %v (known %v), want %v (%v)", own, known, tc.wantOwn, tc.wantKnown)
			}
		})
	}
}

func TestBackupsAfter(t *testing.T) {
	files := []Ref{bk(1), bk(2), bk(3), live(9, "x")}
	cases := []struct {
		name string
		ref  Ref
		live bool
		want []string
	}{
		{"the backups rotated after a backup come after it", bk(1), false, []string{"audit-2.log", "audit-3.log"}},
		{"the live file comes last when asked for", bk(2), true, []string{"audit-3.log", "audit.log"}},
		{"nothing comes after the live file", live(9, "x"), true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertPaths(t, backupsAfter(files, tc.ref, tc.live), tc.want...)
		})
	}
}

func TestCopiesOf(t *testing.T) {
	// The live file (inode 50) was opened at second 100 and first read now;
	// its head is "new".
	self := placed{ref: live(50, "new"), fp: fpOf("new"), order: at(100)}
	copyAt := func(n int, head string) Ref {
		return Ref{Path: fmt.Sprintf("audit-%d.log", n), TS: at(n), Dev: 1, Ino: uint64(100 + n), fp: fpOf(head), fpRead: true}
	}
	rotatedSelf := Ref{Path: "audit-101.log", TS: at(101), Dev: 1, Ino: 50, fp: fpOf("new"), fpRead: true}
	var read recentSet
	read.add(fpOf("read"))
	cases := []struct {
		name       string
		files      []Ref
		lastBackup time.Time
		want       int
		wantFirst  time.Time
	}{
		{"a copytruncate copy named a little before the open is a copy", []Ref{copyAt(95, "old"), live(50, "new")}, time.Time{}, 1, at(95)},
		{"the earliest of several copies is where reading starts", []Ref{copyAt(95, "a"), copyAt(99, "b"), live(50, "new")}, time.Time{}, 2, at(95)},
		{"a backup named long before the open is not a copy", []Ref{copyAt(80, "old"), live(50, "new")}, time.Time{}, 0, time.Time{}},
		{"a backup not newer than the last one read is not a copy", []Ref{copyAt(95, "old"), live(50, "new")}, at(95), 0, time.Time{}},
		{"a file already read is not a copy", []Ref{copyAt(95, "read"), live(50, "new")}, time.Time{}, 0, time.Time{}},
		{"the open file's own backup is not a copy", []Ref{rotatedSelf}, time.Time{}, 0, time.Time{}},
		{"the open file's own backup compressed is not a copy", []Ref{gzOf(rotatedSelf)}, time.Time{}, 0, time.Time{}},
		{"an unreadable backup is not a copy", []Ref{{Path: "audit-95.log", TS: at(95), Ino: 7}}, time.Time{}, 0, time.Time{}},
		{"a copy whose first line is not complete yet is a copy", []Ref{{Path: "audit-95.log", TS: at(95), Ino: 7, fpRead: true}}, time.Time{}, 1, at(95)},
		{"a backup rotated after the open file's own is not a copy of it", []Ref{rotatedSelf, copyAt(102, "later"), live(51, "later still")}, time.Time{}, 0, time.Time{}},
		{"a backup rotated after the open file's own compressed one is not a copy of it", []Ref{gzOf(rotatedSelf), copyAt(102, "later"), live(51, "later still")}, time.Time{}, 0, time.Time{}},
		{"a copy made before the open file was rotated is still a copy", []Ref{copyAt(99, "old"), rotatedSelf, copyAt(102, "later")}, time.Time{}, 1, at(99)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, first := copiesOf(tc.files, self, tc.lastBackup, &read)
			if n != tc.want || !first.Equal(tc.wantFirst) {
				t.Fatalf("%d copies from %v, want %d from %v", n, first, tc.want, tc.wantFirst)
			}
		})
	}
}

func TestFindByFingerprint(t *testing.T) {
	files := []Ref{bk(1), gzOf(bk(2)), bk(3), live(9, "line-9")}
	cases := []struct {
		name  string
		fp    fingerprint
		since time.Time
		live  bool
		want  int
	}{
		{"a cursor names the backup with its fingerprint", fpOf("line-3"), time.Time{}, true, 2},
		{"a compressed backup is found by its fingerprint", fpOf("line-2"), time.Time{}, true, 1},
		{"the live file is found when asked for", fpOf("line-9"), time.Time{}, true, 3},
		{"the live file is not a candidate otherwise", fpOf("line-9"), time.Time{}, false, -1},
		{"backups rotated before since are not candidates", fpOf("line-1"), at(2), true, -1},
		{"no file has an unknown fingerprint", fpOf("elsewhere"), time.Time{}, true, -1},
		{"an empty fingerprint names no file", fingerprint{}, time.Time{}, true, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := findByFingerprint(files, tc.fp, tc.since, tc.live); got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestVanished(t *testing.T) {
	cases := []struct {
		name    string
		pending []Ref
		files   []Ref
		want    []string
	}{
		{"a queued backup still listed has not vanished", []Ref{bk(1)}, []Ref{bk(1), live(9, "x")}, nil},
		{"a queued backup compressed since has not vanished", []Ref{bk(1)}, []Ref{gzOf(bk(1))}, nil},
		{"a queued backup no longer listed has vanished", []Ref{bk(1), bk(2)}, []Ref{bk(2)}, []string{"audit-1.log"}},
		{"the live file is not taken for a queued backup", []Ref{bk(1)}, []Ref{{Path: "audit.log", Live: true}}, []string{"audit-1.log"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertPaths(t, vanished(tc.pending, tc.files), tc.want...)
		})
	}
}

func TestNewestBackupAndLiveFile(t *testing.T) {
	files := []Ref{bk(1), bk(3), bk(2), live(9, "x")}
	if got := newestBackup(files); !got.Equal(at(3)) {
		t.Fatalf("newest backup %v, want %v", got, at(3))
	}
	if l, ok := liveFile(files); !ok || l.Path != "audit.log" {
		t.Fatalf("live file %q (%v)", l.Path, ok)
	}
	if _, ok := liveFile(files[:3]); ok {
		t.Fatal("a live file found in a listing of backups")
	}
}

func TestParseBackup(t *testing.T) {
	n := newLogName("/var/log/audit/audit.log")
	day := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		file string
		ok   bool
		want backupName
	}{
		{"a lumberjack backup has its rotation time in its name", "audit-2026-12-02T17-33-14.123.log", true, backupName{ts: time.Date(2026, 12, 2, 17, 33, 14, 123e6, time.UTC)}},
		{"a gzipped lumberjack backup", "audit-2026-12-02T17-33-14.123.log.gz", true, backupName{ts: time.Date(2026, 12, 2, 17, 33, 14, 123e6, time.UTC), gz: true}},
		{"logrotate's first numbered backup", "audit.log.1", true, backupName{seq: 1}},
		{"logrotate's numbered backup compressed", "audit.log.12.gz", true, backupName{seq: 12, gz: true}},
		{"logrotate's dateext with a day", "audit.log-20261202", true, backupName{ts: day, coarse: true}},
		{"logrotate's dateext with an hour", "audit.log-2026120215.gz", true, backupName{ts: day.Add(15 * time.Hour), coarse: true, gz: true}},
		{"logrotate's dateext with unix seconds takes the exact time", "audit.log-20261202-1796232794", true, backupName{ts: time.Unix(1796232794, 0).UTC()}},
		{"the live file is not a backup", "audit.log", false, backupName{}},
		{"number zero is not logrotate's", "audit.log.0", false, backupName{}},
		{"a leading zero is not logrotate's", "audit.log.01", false, backupName{}},
		{"a word after the live name is not a backup", "audit.log.old", false, backupName{}},
		{"a date that is no date is not a backup", "audit.log-20261399", false, backupName{}},
		{"a date of another length is not a backup", "audit.log-202612", false, backupName{}},
		{"an empty time after the day is not a backup", "audit.log-20261202-", false, backupName{}},
		{"another log's backup is not this one's", "kube.log.1", false, backupName{}},
		{"a lumberjack name with a bad time is not a backup", "audit-2026-12-02.log", false, backupName{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := n.parseBackup(tc.file)
			if ok != tc.ok || !got.ts.Equal(tc.want.ts) || got.seq != tc.want.seq || got.gz != tc.want.gz || got.coarse != tc.want.coarse {
				t.Fatalf("parseBackup(%q) = %+v, %v; want %+v, %v", tc.file, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestSortListingOfLogrotateNames(t *testing.T) {
	num := func(seq int, mtime time.Time, gz bool) Ref {
		r := Ref{Path: fmt.Sprintf("audit.log.%d", seq), Seq: seq, TS: mtime, GZ: gz}
		if gz {
			r.Path += ".gz"
		}
		return r
	}
	dated := func(name string, ts time.Time) Ref { return Ref{Path: name, TS: ts} }
	l := live(1, "x")
	cases := []struct {
		name    string
		backups []Ref
		want    []string
	}{
		{"a higher number is older", []Ref{num(1, at(30), false), num(3, at(10), true), num(2, at(20), false)}, []string{"audit.log.3.gz", "audit.log.2", "audit.log.1", "audit.log"}},
		{"a higher number is older whatever the modification times say", []Ref{num(1, at(10), false), num(2, at(20), false)}, []string{"audit.log.2", "audit.log.1", "audit.log"}},
		{"a numbered backup being compressed is listed once, as the plain file", []Ref{num(1, at(30), true), num(1, at(20), false), num(2, at(10), true)}, []string{"audit.log.2.gz", "audit.log.1", "audit.log"}},
		{"dateext backups are ordered by the dates in their names", []Ref{dated("audit.log-20261203", at(86400)), dated("audit.log-20261202", at(0))}, []string{"audit.log-20261202", "audit.log-20261203", "audit.log"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := sortListing(tc.backups, &l)
			assertPaths(t, got, tc.want...)
			for i := 1; i < len(got)-1; i++ {
				if !got[i].TS.After(got[i-1].TS) {
					t.Fatalf("%s (%v) is not after %s (%v)", got[i].Path, got[i].TS, got[i-1].Path, got[i-1].TS)
				}
			}
		})
	}
}

func TestCopiesOfWithDateextNames(t *testing.T) {
	self := placed{ref: live(50, "new"), fp: fpOf("new"), order: at(100)}
	day := Ref{Path: "audit.log-20261202", TS: at(-86400), Coarse: true, Ino: 7, fp: fpOf("old"), fpRead: true}
	cases := []struct {
		name    string
		modTime time.Time
		want    int
	}{
		{"a copy named by its day and written since the open is a copy", at(99), 1},
		{"a backup named by its day and written long before the open is not", at(50), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ref := day
			ref.ModTime = tc.modTime
			if n, _ := copiesOf([]Ref{ref}, self, time.Time{}, &recentSet{}); n != tc.want {
				t.Fatalf("%d copies, want %d", n, tc.want)
			}
		})
	}
}
