package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/audittail/audittail/source"
)

func openSpool(t *testing.T, dir string, maxBytes int64) *Spool {
	t.Helper()
	s, err := OpenSpool(dir, maxBytes, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// event returns a line (with '\n') of an audit event numbered i, padded
// to about size bytes.
func event(i, size int) string {
	head := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"id-%06d","stage":"ResponseComplete","pad":"`, i)
	pad := max(size-len(head)-3, 0)
	return head + strings.Repeat("x", pad) + "\"}\n"
}

func appendEvents(t *testing.T, s *Spool, from, n, size int) {
	t.Helper()
	var b strings.Builder
	for i := from; i < from+n; i++ {
		b.WriteString(event(i, size))
	}
	if err := s.Append([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
}

// readN reads n lines from r, or fails after a stall of 10s.
func readN(t *testing.T, r *Reader, n int) ([]string, source.Position) {
	t.Helper()
	var lines []string
	var end source.Position
	for len(lines) < n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := r.Next(ctx)
		cancel()
		if err != nil {
			t.Fatalf("after %d of %d lines: %v", len(lines), n, err)
		}
		for i := range c.Len() {
			lines = append(lines, string(c.Line(i)))
		}
		end = c.End
		c.Release()
	}
	if len(lines) != n {
		t.Fatalf("read %d lines, want %d", len(lines), n)
	}
	return lines, end
}

func auditIDOf(t *testing.T, line string) string {
	t.Helper()
	var ev struct {
		AuditID string `json:"auditID"`
	}
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		t.Fatalf("not JSON: %v: %.80s", err, line)
	}
	return ev.AuditID
}

func TestEventsAreReadInOrderAcrossSegmentsAndFromAPositionAfterARestart(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, 1<<20) // segments of 128 KiB
	for i := 0; i < 100; i++ {
		appendEvents(t, s, i*10, 10, 500)
	}
	if s.Segments() < 4 {
		t.Fatalf("%d segments for 500 KB: the spool did not rotate", s.Segments())
	}
	r, err := s.Open(ReaderConfig{MaxEvents: 50, MaxWait: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lines, _ := readN(t, r, 600)
	for i, l := range lines {
		if got, want := auditIDOf(t, l), fmt.Sprintf("id-%06d", i); got != want {
			t.Fatalf("line %d is %s, want %s", i, got, want)
		}
	}
	// The position after 600 lines, as a checkpoint would keep it.
	r.Close()
	pos := source.Position{}
	{
		r, _ := s.Open(ReaderConfig{MaxEvents: 600}, nil)
		_, pos = readN(t, r, 600)
		r.Close()
	}
	s.Close()

	s = openSpool(t, dir, 1<<20)
	r, err = s.Open(ReaderConfig{MaxEvents: 1000, MaxWait: time.Millisecond}, pos.State)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	lines, _ = readN(t, r, 400)
	if got := auditIDOf(t, lines[0]); got != "id-000600" {
		t.Fatalf("a reader at the position after 600 lines starts at %s", got)
	}
	if got := auditIDOf(t, lines[399]); got != "id-000999" {
		t.Fatalf("the last line is %s", got)
	}
}

func TestATornLastLineIsCutOnOpenAndTheNextAppendIsNotGluedToIt(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, 1<<20)
	appendEvents(t, s, 0, 3, 200)
	s.Close()
	// A crash during an append: half a line at the end, never fsynced,
	// never acknowledged.
	segs, _ := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	torn := event(3, 200)[:77]
	f.WriteString(torn)
	f.Close()

	s = openSpool(t, dir, 1<<20)
	if got := s.Stats.TornBytes.Load(); got != int64(len(torn)) {
		t.Fatalf("cut %d bytes, want the %d of the torn line", got, len(torn))
	}
	appendEvents(t, s, 4, 1, 200)
	r, _ := s.Open(ReaderConfig{MaxWait: time.Millisecond}, nil)
	defer r.Close()
	lines, _ := readN(t, r, 4)
	for i, want := range []string{"id-000000", "id-000001", "id-000002", "id-000004"} {
		if got := auditIDOf(t, lines[i]); got != want {
			t.Fatalf("line %d: %s, want %s", i, got, want)
		}
	}
}

func TestAFullSpoolRefusesAppendsDropsNothingAndShrinksOnceRead(t *testing.T) {
	s := openSpool(t, t.TempDir(), 512<<10) // segments of 64 KiB
	n := 0
	for {
		var b strings.Builder
		for i := 0; i < 20; i++ {
			b.WriteString(event(n*20+i, 1000))
		}
		err := s.Append([]byte(b.String()))
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if held := s.Bytes(); held > 512<<10 || held < 400<<10 {
		t.Fatalf("the spool holds %d bytes when full, max_bytes is %d", held, 512<<10)
	}
	if s.Stats.Full.Load() != 1 {
		t.Fatalf("full refusals: %d", s.Stats.Full.Load())
	}
	r, _ := s.Open(ReaderConfig{MaxEvents: 1000, MaxWait: time.Millisecond}, nil)
	defer r.Close()
	lines, end := readN(t, r, n*20)
	for i, l := range lines {
		if got, want := auditIDOf(t, l), fmt.Sprintf("id-%06d", i); got != want {
			t.Fatalf("line %d: %s, want %s (the refused append must leave nothing)", i, got, want)
		}
	}
	_, off, err := Offset(end.State)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Trim(off); err != nil {
		t.Fatal(err)
	}
	if s.Bytes() != 0 || s.Segments() != 1 {
		t.Fatalf("after every line was read and trimmed: %d bytes in %d segments, want 0 in 1", s.Bytes(), s.Segments())
	}
	files, _ := filepath.Glob(filepath.Join(s.Dir(), "*"+segSuffix))
	if len(files) != 1 {
		t.Fatalf("segment files left: %v", files)
	}
	appendEvents(t, s, 100000, 20, 1000) // room again
	more, _ := readN(t, r, 20)
	if got := auditIDOf(t, more[0]); got != "id-100000" {
		t.Fatalf("after the trim the reader read %s", got)
	}
}

func TestTrimKeepsEverySegmentNotYetReadPast(t *testing.T) {
	s := openSpool(t, t.TempDir(), 1<<20)
	for i := 0; i < 40; i++ {
		appendEvents(t, s, i*10, 10, 1000) // 10 KB each, segments of 128 KiB
	}
	r, _ := s.Open(ReaderConfig{MaxEvents: 150, MaxWait: time.Millisecond}, nil)
	defer r.Close()
	_, end := readN(t, r, 150)
	_, off, _ := Offset(end.State)
	before := s.Segments()
	if err := s.Trim(off); err != nil {
		t.Fatal(err)
	}
	if s.Segments() != before-1 {
		t.Fatalf("150 KB read of segments of 128 KiB: %d segments left of %d, want one deleted", s.Segments(), before)
	}
	// Another reader from the trimmed position reads the rest, in full.
	r2, err := s.Open(ReaderConfig{MaxEvents: 1000, MaxWait: time.Millisecond}, end.State)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	lines, _ := readN(t, r2, 250)
	if auditIDOf(t, lines[0]) != "id-000150" || auditIDOf(t, lines[249]) != "id-000399" {
		t.Fatalf("read %s .. %s", auditIDOf(t, lines[0]), auditIDOf(t, lines[249]))
	}
	if r2.cfg.Stats.LostBytes.Load() != 0 {
		t.Fatal("counted a loss")
	}
}

func TestConcurrentAppendsShareAnFsync(t *testing.T) {
	s := openSpool(t, t.TempDir(), 1<<30)
	var wg sync.WaitGroup
	for c := 0; c < 16; c++ {
		wg.Go(func() {
			for i := 0; i < 50; i++ {
				if err := s.Append([]byte(event(c*1000+i, 300))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	appends, fsyncs := s.Stats.Appends.Load(), s.Stats.Fsyncs.Load()
	if appends != 800 {
		t.Fatalf("%d appends acknowledged, want 800", appends)
	}
	if fsyncs >= appends {
		t.Fatalf("%d fsyncs for %d concurrent appends: no group commit", fsyncs, appends)
	}
	if _, count, _ := s.Stats.FsyncNanos.Snapshot(); count != uint64(fsyncs) {
		t.Fatalf("fsync histogram counts %d, fsyncs %d", count, fsyncs)
	}
	r, _ := s.Open(ReaderConfig{MaxEvents: 1000, MaxWait: time.Millisecond}, nil)
	defer r.Close()
	lines, _ := readN(t, r, 800)
	seen := map[string]bool{}
	for _, l := range lines {
		seen[auditIDOf(t, l)] = true
	}
	if len(seen) != 800 {
		t.Fatalf("%d distinct events of 800", len(seen))
	}
}

func TestASecondAgentOnTheSpoolIsRefusedWithThePidOfTheFirst(t *testing.T) {
	dir := t.TempDir()
	openSpool(t, dir, 1<<20)
	_, err := OpenSpool(dir, 1<<20, nil)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("in use by another audittail (pid %d)", os.Getpid())) {
		t.Fatalf("second open: %v", err)
	}
}

func TestAPositionOfAnotherSpoolIsReadFromTheOldestEventAndCountedLost(t *testing.T) {
	s1 := openSpool(t, t.TempDir(), 1<<20)
	appendEvents(t, s1, 0, 5, 200)
	r1, _ := s1.Open(ReaderConfig{MaxWait: time.Millisecond}, nil)
	_, end := readN(t, r1, 5)
	r1.Close()

	s2 := openSpool(t, t.TempDir(), 1<<20)
	appendEvents(t, s2, 100, 2, 200)
	stats := &source.Stats{}
	r2, err := s2.Open(ReaderConfig{MaxWait: time.Millisecond, Stats: stats}, end.State)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	lines, _ := readN(t, r2, 2)
	if auditIDOf(t, lines[0]) != "id-000100" {
		t.Fatalf("read %s", lines[0])
	}
	if stats.LostFiles.Load() != 1 {
		t.Fatal("the replaced spool is not reported")
	}
}

func TestAReaderCutsAChunkAtTheAskedPositionAndStopHandsOutWhatItHas(t *testing.T) {
	s := openSpool(t, t.TempDir(), 1<<20)
	appendEvents(t, s, 0, 10, 200)
	r, _ := s.Open(ReaderConfig{MaxEvents: 1000, MaxWait: time.Hour}, nil)
	_, at := readN(t, r, 0) // nothing: a zero position
	_ = at
	// A second reader finds where line 4 ends.
	probe, _ := s.Open(ReaderConfig{MaxEvents: 4}, nil)
	_, p4 := readN(t, probe, 4)
	probe.Close()

	r.CutAt(p4)
	c, err := r.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 4 || !c.End.Same(p4) {
		t.Fatalf("chunk of %d lines ending at %+v, want 4 ending at %+v", c.Len(), c.End, p4)
	}
	c.Release()
	r.CutAt(source.Position{})
	// MaxWait is an hour: Stop makes Next hand out the 6 lines it has.
	time.AfterFunc(50*time.Millisecond, r.Stop)
	c, err = r.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 6 {
		t.Fatalf("after Stop: %d lines, want 6", c.Len())
	}
	c.Release()
	if _, err := r.Next(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last chunk: %v, want io.EOF", err)
	}
}

func TestOldestAgeIsThatOfTheFirstEventNotRead(t *testing.T) {
	s := openSpool(t, t.TempDir(), 1<<20)
	appendEvents(t, s, 0, 1, 200)
	first := s.Synced()
	s.mu.Lock()
	s.marks[0].t = time.Now().Add(-time.Minute)
	s.mu.Unlock()
	time.Sleep(time.Second + 10*time.Millisecond) // marks are a second apart at least
	appendEvents(t, s, 1, 1, 200)
	now := time.Now()
	if age := s.OldestAge(0, now); age < time.Minute || age > time.Minute+5*time.Second {
		t.Fatalf("age at 0: %s, want about a minute", age)
	}
	if age := s.OldestAge(first, now); age > 5*time.Second {
		t.Fatalf("age after the first event: %s, want that of the second (new)", age)
	}
	if age := s.OldestAge(s.Synced(), now); age != 0 {
		t.Fatalf("age at the end: %s", age)
	}
}
