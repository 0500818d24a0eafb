// Command nxadmtail is a rotation stress test for github.com/nxadm/tail.
//
// It writes -n audit events with unique auditIDs into dir/audit.log, rotating
// either with a real gopkg.in/natefinch/lumberjack.v2 Logger (rename + create,
// optional background gzip) or with copytruncate (copy audit.log to a backup,
// truncate it in place), while nxadm/tail follows dir/audit.log the way a
// careful user would configure it (Follow, ReOpen, !MustExist, CompleteLines,
// Location = start). When the writer is done and the tailer has been quiet for
// -quiet, the tailer is stopped and the received lines are compared with what
// was written: missing and duplicated auditIDs, malformed lines, and whether
// the offsets nxadm/tail reports (Line.SeekInfo.Offset, and Tail.Tell()
// called by the consumer right after receiving the line) equal the byte
// offset of the end of that line in the file it was written to.
//
// Usage:
//
//	cd scripts/experiments # a module of its own: nxadm/tail stays out of audittail's go.mod
//	go run ./nxadmtail -n 200000                 # one run: lumberjack, inotify, unthrottled
//	go run ./nxadmtail -rotate copytruncate -poll -rate 20000
//	go run ./nxadmtail -matrix -runs 3           # every variant, 3 runs each, one table
//	go run ./nxadmtail -matrix -runs 3 -n 40000 -rates 2000
//
// -matrix runs -rotations x -watchers x -rates (default lumberjack,copytruncate x
// inotify,poll x 0,20000). Results are recorded in docs/decisions/0001-follower.md.
//
// In -matrix mode every run is a separate child process (the same binary), so
// nxadm/tail's process-global inotify tracker starts fresh and an os.Exit
// inside the library (watch: util.Fatal) shows up as a failed run instead of
// killing the whole experiment.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nxadm/tail"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/audittail/audittail/parser/auditgen"
)

type config struct {
	N             int
	Rate          int // lines per second, 0 = as fast as possible
	Rotate        string
	Poll          bool
	Compress      bool
	CompleteLines bool
	MaxSizeMB     int
	Quiet         time.Duration
	MaxWait       time.Duration
	Seed          uint64
}

func (c config) name() string {
	w := "inotify"
	if c.Poll {
		w = "poll"
	}
	r := "max"
	if c.Rate > 0 {
		r = fmt.Sprintf("%d/s", c.Rate)
	}
	s := fmt.Sprintf("%s %s %s", c.Rotate, w, r)
	if c.Rotate == "lumberjack" && !c.Compress {
		s += " nogz"
	}
	if !c.CompleteLines {
		s += " !CL"
	}
	return s
}

// result is what one run reports; in -matrix mode a child prints it as JSON.
type result struct {
	Variant   string
	N         int
	Written   int
	OnDisk    int // lines found in audit.log + backups (.gz decompressed) after the run
	Rotations int
	Received  int
	Missing   int
	Dup       int // extra deliveries of an auditID already received
	Malformed int // received lines that are not valid JSON or carry no known auditID
	// Missing lines classified by file generation (one generation = one
	// audit.log between rotations).
	GensTotal      int
	GensSkipped    int // generations of which no line was received
	GensTailLost   int // generations whose received lines stop before the end (lost suffix)
	GensOtherLoss  int // other patterns (lost prefix / holes)
	SeekExact      int // Line.SeekInfo.Offset == end offset of the line in its file
	SeekChecked    int
	TellExact      int // Tail.Tell() called by the consumer == end offset of the line
	TellAhead      int // Tell() > end offset (tailer already read further)
	TellOther      int // Tell() < end offset, or an error/0 (file being reopened)
	TellChecked    int
	ReopenDeleted  int // "Re-opening moved/deleted file" log lines
	ReopenTrunc    int // "Re-opening truncated file" log lines
	TailErr        string
	TailDied       bool // Lines was closed before we called Stop: the tailer gave up by itself
	WriterSeconds  float64
	TotalSeconds   float64
	ExitStatus     string // set by the -matrix parent when a child did not exit cleanly
	StderrExcerpt  string
	FirstMissingAt string // e.g. "gen 3 line 812/1043"
}

type lineInfo struct {
	gen int   // file generation the line was written to
	end int64 // byte offset of the end of the line (after '\n') in that file
	idx int   // index of the line within its generation
}

type received struct {
	text string
	off  int64 // Line.SeekInfo.Offset
	tell int64 // Tail.Tell() right after receiving
	terr bool  // Tell returned an error
	lerr error // Line.Err
}

// countingLogger satisfies nxadm/tail's logger interface and counts the
// reopen messages instead of printing them.
type countingLogger struct {
	mu      sync.Mutex
	deleted int
	trunc   int
	other   []string
}

func (l *countingLogger) Fatal(v ...interface{})                 { panic(fmt.Sprint(v...)) }
func (l *countingLogger) Fatalf(format string, v ...interface{}) { panic(fmt.Sprintf(format, v...)) }
func (l *countingLogger) Fatalln(v ...interface{})               { panic(fmt.Sprintln(v...)) }
func (l *countingLogger) Panic(v ...interface{})                 { panic(fmt.Sprint(v...)) }
func (l *countingLogger) Panicf(format string, v ...interface{}) { panic(fmt.Sprintf(format, v...)) }
func (l *countingLogger) Panicln(v ...interface{})               { panic(fmt.Sprintln(v...)) }
func (l *countingLogger) Print(v ...interface{})                 { l.record(fmt.Sprint(v...)) }
func (l *countingLogger) Printf(format string, v ...interface{}) { l.record(fmt.Sprintf(format, v...)) }
func (l *countingLogger) Println(v ...interface{})               { l.record(fmt.Sprintln(v...)) }

func (l *countingLogger) record(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case strings.HasPrefix(s, "Re-opening moved/deleted"):
		l.deleted++
	case strings.HasPrefix(s, "Re-opening truncated"):
		l.trunc++
	case strings.HasPrefix(s, "Successfully reopened"), strings.HasPrefix(s, "Waiting for"):
	default:
		if len(l.other) < 5 {
			l.other = append(l.other, s)
		}
	}
}

func main() {
	var c config
	var matrix bool
	var runs int
	var asJSON bool
	flag.IntVar(&c.N, "n", 200000, "number of events to write")
	flag.IntVar(&c.Rate, "rate", 0, "events per second (0 = as fast as possible)")
	flag.StringVar(&c.Rotate, "rotate", "lumberjack", "rotation: lumberjack (rename+create) or copytruncate")
	flag.BoolVar(&c.Poll, "poll", false, "nxadm/tail Config.Poll (stat polling instead of inotify)")
	flag.BoolVar(&c.Compress, "compress", true, "lumberjack Compress (gzip backups in the background)")
	flag.BoolVar(&c.CompleteLines, "complete-lines", true, "nxadm/tail Config.CompleteLines")
	flag.IntVar(&c.MaxSizeMB, "maxsize", 1, "rotate every this many MB")
	flag.DurationVar(&c.Quiet, "quiet", 3*time.Second, "stop the tailer after the writer is done and no line arrived for this long")
	flag.DurationVar(&c.MaxWait, "maxwait", 40*time.Second, "stop the tailer at the latest this long after the writer is done")
	flag.Uint64Var(&c.Seed, "seed", 1, "auditgen seed")
	flag.BoolVar(&matrix, "matrix", false, "run every variant -runs times (each in a child process) and print one table")
	flag.IntVar(&runs, "runs", 3, "runs per variant in -matrix mode")
	flag.BoolVar(&asJSON, "json", false, "print the result as one JSON line (used by -matrix)")
	rotations := flag.String("rotations", "lumberjack,copytruncate", "-matrix: rotation schemes")
	watchers := flag.String("watchers", "inotify,poll", "-matrix: nxadm/tail watchers")
	rates := flag.String("rates", "0,20000", "-matrix: write rates (events/s, 0 = max)")
	flag.Parse()

	if matrix {
		runMatrix(c, runs, *rotations, *watchers, *rates)
		return
	}
	if c.Rotate != "lumberjack" && c.Rotate != "copytruncate" {
		fmt.Fprintln(os.Stderr, "-rotate must be lumberjack or copytruncate")
		os.Exit(2)
	}
	r, err := run(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	if asJSON {
		b, _ := json.Marshal(r)
		fmt.Printf("RESULT %s\n", b)
		return
	}
	printTable(os.Stdout, []result{r})
}

// writer abstracts the two rotation schemes. write returns the generation
// and the end offset of the line just written.
type writer interface {
	write(p []byte) (gen int, end int64, err error)
	rotations() int
	close() error
}

// ljWriter writes through a real lumberjack.Logger and mirrors its rotation
// rule (rotate before a write that would make the file exceed MaxSize) to
// know which file and offset each line landed at. The mirror is checked
// against the on-disk files after the run (OnDisk).
type ljWriter struct {
	l    *lumberjack.Logger
	max  int64
	size int64
	gen  int
}

func (w *ljWriter) write(p []byte) (int, int64, error) {
	if w.size+int64(len(p)) > w.max {
		w.gen++
		w.size = 0
	}
	n, err := w.l.Write(p)
	w.size += int64(n)
	return w.gen, w.size, err
}
func (w *ljWriter) rotations() int { return w.gen }
func (w *ljWriter) close() error   { return w.l.Close() }

// ctWriter keeps audit.log open with O_APPEND and, when the next write would
// exceed max, copies it to audit-<gen>.log and truncates it in place (what
// logrotate's copytruncate does). Writes are not interleaved with the copy,
// so the backups plus audit.log always hold every line; only a follower can
// lose lines.
type ctWriter struct {
	dir  string
	f    *os.File
	max  int64
	size int64
	gen  int
}

func newCTWriter(dir string, max int64) (*ctWriter, error) {
	f, err := os.OpenFile(filepath.Join(dir, "audit.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &ctWriter{dir: dir, f: f, max: max}, nil
}

func (w *ctWriter) write(p []byte) (int, int64, error) {
	if w.size+int64(len(p)) > w.max {
		if err := w.copyTruncate(); err != nil {
			return 0, 0, err
		}
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	return w.gen, w.size, err
}

func (w *ctWriter) copyTruncate() error {
	src, err := os.Open(filepath.Join(w.dir, "audit.log"))
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(w.dir, fmt.Sprintf("audit-%06d.log", w.gen)), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	if err := w.f.Truncate(0); err != nil {
		return err
	}
	w.gen++
	w.size = 0
	return nil
}
func (w *ctWriter) rotations() int { return w.gen }
func (w *ctWriter) close() error   { return w.f.Close() }

func run(c config) (result, error) {
	res := result{Variant: c.name(), N: c.N}
	start := time.Now()
	dir, err := os.MkdirTemp("", "nxadmtail-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "audit.log")

	// Tailer first: audit.log does not exist yet (MustExist: false).
	logger := &countingLogger{}
	t, err := tail.TailFile(path, tail.Config{
		Location:      &tail.SeekInfo{Offset: 0, Whence: io.SeekStart},
		ReOpen:        true,
		MustExist:     false,
		Poll:          c.Poll,
		Follow:        true,
		CompleteLines: c.CompleteLines,
		Logger:        logger,
	})
	if err != nil {
		return res, err
	}
	var (
		recs     []received
		lastRecv atomic.Int64
		stopping atomic.Bool
		died     atomic.Bool
		consumed = make(chan struct{})
	)
	lastRecv.Store(time.Now().UnixNano())
	go func() {
		defer close(consumed)
		defer func() { died.Store(!stopping.Load()) }()
		for line := range t.Lines {
			// What a user checkpointing "the offset of the line I just
			// processed" would call. nxadm/tail documents it as possibly
			// inaccurate; it also reads t.file without t.lk (a data race
			// with reopen), which we accept here on purpose.
			tell, terr := t.Tell()
			recs = append(recs, received{text: line.Text, off: line.SeekInfo.Offset, tell: tell, terr: terr != nil, lerr: line.Err})
			lastRecv.Store(time.Now().UnixNano())
		}
	}()

	// Writer.
	var w writer
	max := int64(c.MaxSizeMB) * 1024 * 1024
	if c.Rotate == "lumberjack" {
		w = &ljWriter{l: &lumberjack.Logger{Filename: path, MaxSize: c.MaxSizeMB, MaxBackups: 10000, Compress: c.Compress}, max: max}
	} else {
		cw, err := newCTWriter(dir, max)
		if err != nil {
			return res, err
		}
		w = cw
	}
	g := auditgen.New(c.Seed)
	written := make(map[string]lineInfo, c.N)
	genCount := map[int]int{}
	var buf []byte
	wstart := time.Now()
	for i := 0; i < c.N; i++ {
		if c.Rate > 0 {
			due := wstart.Add(time.Duration(int64(i) * int64(time.Second) / int64(c.Rate)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		buf = g.Append(buf[:0], auditgen.Metadata, time.Now())
		gen, end, err := w.write(buf)
		if err != nil {
			return res, fmt.Errorf("write %d: %w", i, err)
		}
		written[auditgen.AuditID(c.Seed, uint64(i))] = lineInfo{gen: gen, end: end, idx: genCount[gen]}
		genCount[gen]++
	}
	res.WriterSeconds = time.Since(wstart).Seconds()
	res.Written = c.N
	res.Rotations = w.rotations()
	res.GensTotal = len(genCount)
	if err := w.close(); err != nil {
		return res, err
	}

	// Wait for the tailer to go quiet, then stop it.
	done := time.Now()
	for {
		time.Sleep(50 * time.Millisecond)
		last := time.Unix(0, lastRecv.Load())
		if last.Before(done) {
			last = done
		}
		if time.Since(last) >= c.Quiet || time.Since(done) >= c.MaxWait || isClosed(consumed) {
			break
		}
	}
	stopping.Store(true)
	if err := t.Stop(); err != nil {
		res.TailErr = err.Error()
	}
	<-consumed
	res.TailDied = died.Load()
	t.Cleanup()
	logger.mu.Lock()
	res.ReopenDeleted, res.ReopenTrunc = logger.deleted, logger.trunc
	if len(logger.other) > 0 && res.TailErr == "" {
		res.TailErr = "log: " + strings.Join(logger.other, " | ")
	}
	logger.mu.Unlock()

	// Give lumberjack's background compression a moment, then count what is on disk.
	// (A file can vanish between ReadDir and Open while gzip finishes: retry.)
	for try := 0; ; try++ {
		time.Sleep(200 * time.Millisecond)
		res.OnDisk, err = countOnDisk(dir)
		if err == nil {
			break
		}
		if try == 50 {
			return res, err
		}
	}

	// Compare.
	res.Received = len(recs)
	seen := make(map[string]int, c.N)
	recvByGen := map[int][]int{} // gen -> indexes received
	for _, r := range recs {
		id, ok := auditIDOf(r.text)
		info, known := written[id]
		if !ok || !known || !json.Valid([]byte(r.text)) || r.lerr != nil {
			res.Malformed++
			continue
		}
		seen[id]++
		if seen[id] > 1 {
			res.Dup++
			continue
		}
		recvByGen[info.gen] = append(recvByGen[info.gen], info.idx)
		res.SeekChecked++
		if r.off == info.end {
			res.SeekExact++
		}
		res.TellChecked++
		switch {
		case r.terr:
			res.TellOther++
		case r.tell == info.end:
			res.TellExact++
		case r.tell > info.end:
			res.TellAhead++
		default:
			res.TellOther++
		}
	}
	for id := range written {
		if seen[id] == 0 {
			res.Missing++
		}
	}
	gens := make([]int, 0, len(genCount))
	for gen := range genCount {
		gens = append(gens, gen)
	}
	sort.Ints(gens)
	for _, gen := range gens {
		total := genCount[gen]
		got := recvByGen[gen]
		if len(got) == total {
			continue
		}
		if len(got) == 0 {
			res.GensSkipped++
			if res.FirstMissingAt == "" {
				res.FirstMissingAt = fmt.Sprintf("gen %d (all %d lines)", gen, total)
			}
			continue
		}
		sort.Ints(got)
		// Received exactly a prefix 0..k-1 => the end of the file was lost.
		prefix := got[len(got)-1] == len(got)-1
		if prefix {
			res.GensTailLost++
		} else {
			res.GensOtherLoss++
		}
		if res.FirstMissingAt == "" {
			first := 0
			for first < len(got) && got[first] == first {
				first++
			}
			res.FirstMissingAt = fmt.Sprintf("gen %d line %d/%d", gen, first, total)
		}
	}
	res.TotalSeconds = time.Since(start).Seconds()
	return res, nil
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func auditIDOf(s string) (string, bool) {
	const key = `"auditID":"`
	i := strings.Index(s, key)
	if i < 0 || len(s) < i+len(key)+36 {
		return "", false
	}
	return s[i+len(key) : i+len(key)+36], true
}

// countOnDisk counts the lines in dir's audit*.log and audit*.log.gz files.
// A backup that exists both plain and gzipped (compression in progress) is
// counted once, from the plain file.
func countOnDisk(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
	}
	n := 0
	for name := range names {
		var r io.Reader
		switch {
		case strings.HasSuffix(name, ".log"):
			f, err := os.Open(filepath.Join(dir, name))
			if err != nil {
				return 0, err
			}
			defer f.Close()
			r = f
		case strings.HasSuffix(name, ".log.gz") && !names[strings.TrimSuffix(name, ".gz")]:
			f, err := os.Open(filepath.Join(dir, name))
			if err != nil {
				return 0, err
			}
			defer f.Close()
			zr, err := gzip.NewReader(f)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", name, err)
			}
			r = zr
		default:
			continue
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		n += bytes.Count(b, []byte{'\n'})
	}
	return n, nil
}

// runMatrix runs every variant `runs` times, each in a child process.
func runMatrix(base config, runs int, rotations, watchers, rates string) {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var variants []config
	for _, rot := range strings.Split(rotations, ",") {
		for _, w := range strings.Split(watchers, ",") {
			for _, rs := range strings.Split(rates, ",") {
				var rate int
				if _, err := fmt.Sscan(rs, &rate); err != nil {
					fmt.Fprintln(os.Stderr, "bad -rates:", err)
					os.Exit(2)
				}
				c := base
				c.Rotate, c.Poll, c.Rate = rot, w == "poll", rate
				variants = append(variants, c)
			}
		}
	}
	var all []result
	for _, c := range variants {
		for i := 0; i < runs; i++ {
			args := []string{"-json",
				"-n", fmt.Sprint(c.N), "-rate", fmt.Sprint(c.Rate), "-rotate", c.Rotate,
				fmt.Sprintf("-poll=%v", c.Poll), fmt.Sprintf("-compress=%v", c.Compress),
				fmt.Sprintf("-complete-lines=%v", c.CompleteLines), "-maxsize", fmt.Sprint(c.MaxSizeMB),
				"-quiet", c.Quiet.String(), "-maxwait", c.MaxWait.String(), "-seed", fmt.Sprint(c.Seed + uint64(i)),
			}
			cmd := exec.Command(exe, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			r := result{Variant: c.name(), N: c.N}
			if line, ok := findResult(stdout.Bytes()); ok {
				if jerr := json.Unmarshal(line, &r); jerr != nil {
					r.ExitStatus = "bad result: " + jerr.Error()
				}
			}
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				r.ExitStatus = ee.String()
			} else if err != nil {
				r.ExitStatus = err.Error()
			}
			if s := strings.TrimSpace(stderr.String()); s != "" {
				if len(s) > 300 {
					s = s[:300] + "..."
				}
				r.StderrExcerpt = s
			}
			all = append(all, r)
			fmt.Fprintf(os.Stderr, "done: %-34s run %d  missing=%d dup=%d malformed=%d %s\n", r.Variant, i+1, r.Missing, r.Dup, r.Malformed, r.ExitStatus)
		}
	}
	printTable(os.Stdout, all)
}

func findResult(out []byte) ([]byte, bool) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if b, ok := bytes.CutPrefix(sc.Bytes(), []byte("RESULT ")); ok {
			return append([]byte(nil), b...), true
		}
	}
	return nil, false
}

func yesNo(b bool) string {
	if b {
		return "YES"
	}
	return "no"
}

func pct(a, b int) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(b))
}

func printTable(out io.Writer, rs []result) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "variant\twritten\ton disk\trotations\treceived\tmissing\tdup\tmalformed\ttail died\tgens skipped\tgens tail-lost\tgens other\tSeekInfo exact\tTell exact\tTell ahead\treopen del/trunc\twriter s\ttotal s\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%d/%d\t%.1f\t%.1f\t\n",
			r.Variant, r.Written, r.OnDisk, r.Rotations, r.Received, r.Missing, r.Dup, r.Malformed, yesNo(r.TailDied),
			r.GensSkipped, r.GensTailLost, r.GensOtherLoss,
			pct(r.SeekExact, r.SeekChecked), pct(r.TellExact, r.TellChecked), pct(r.TellAhead, r.TellChecked),
			r.ReopenDeleted, r.ReopenTrunc, r.WriterSeconds, r.TotalSeconds)
	}
	tw.Flush()
	for _, r := range rs {
		var notes []string
		if r.FirstMissingAt != "" {
			notes = append(notes, "first loss: "+r.FirstMissingAt)
		}
		if r.TailErr != "" {
			notes = append(notes, "tail: "+r.TailErr)
		}
		if r.ExitStatus != "" {
			notes = append(notes, "child: "+r.ExitStatus)
		}
		if r.StderrExcerpt != "" {
			notes = append(notes, "stderr: "+strings.ReplaceAll(r.StderrExcerpt, "\n", " ⏎ "))
		}
		if len(notes) > 0 {
			fmt.Fprintf(out, "  %s: %s\n", r.Variant, strings.Join(notes, "; "))
		}
	}
}
