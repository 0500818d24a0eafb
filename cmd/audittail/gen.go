package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/audittail/audittail/parser/auditgen"
)

func runGen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gen", "gen --path FILE [--events N | --duration D] [--rate N] [--maxsize MB] [--maxbackup N] [--compress]", stderr)
	path := fs.String("path", "", "audit log `FILE` to write, like kube-apiserver's --audit-log-path (required)")
	rate := fs.Int("rate", 1000, "events per second (`N`); 0 writes as fast as possible")
	duration := fs.Duration("duration", 0, "stop after this long (0: no time limit)")
	events := fs.Int64("events", 0, "stop after `N` events (0: no count limit; then --duration or a signal stops it)")
	maxSize := fs.Int("maxsize", 100, "rotate at `MB` megabytes, like --audit-log-maxsize")
	maxBackup := fs.Int("maxbackup", 10, "keep `N` rotated files (0: all), like --audit-log-maxbackup")
	maxAge := fs.Int("maxage", 0, "delete rotated files older than `DAYS` (0: never), like --audit-log-maxage")
	compress := fs.Bool("compress", false, "gzip rotated files, like --audit-log-compress")
	level := fs.String("level", "mixed", "audit `LEVEL` of the events: Metadata, Request, RequestResponse, or mixed")
	seed := fs.Uint64("seed", 0, "random `SEED`; auditIDs are unique per seed (default: the time)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{fmt.Errorf("gen: --path is required")}
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	if *events == 0 && *duration == 0 {
		fmt.Fprintln(stderr, "gen: no --events or --duration: writing until interrupted")
	}
	lvl, mixed := auditgen.Metadata, *level == "mixed"
	if !mixed {
		var ok bool
		if lvl, ok = auditgen.ParseLevel(*level); !ok {
			return usageError{fmt.Errorf("gen: invalid --level %q (want Metadata, Request, RequestResponse or mixed)", *level)}
		}
	}
	if err := os.MkdirAll(filepath.Dir(*path), 0o755); err != nil {
		return fmt.Errorf("gen: %w", err)
	}
	// Exactly how kube-apiserver configures its audit log writer.
	w := &lumberjack.Logger{
		Filename:   *path,
		MaxSize:    *maxSize,
		MaxBackups: *maxBackup,
		MaxAge:     *maxAge,
		Compress:   *compress,
	}
	defer w.Close()

	var cur int64
	if fi, err := os.Stat(*path); err == nil {
		cur = fi.Size()
	}
	g := auditgen.New(*seed)
	start := time.Now()
	var deadline time.Time
	if *duration > 0 {
		deadline = start.Add(*duration)
	}
	var written, bytes, rotations int64
	var buf []byte
	tick := 10 * time.Millisecond
	perTick := float64(*rate) * tick.Seconds()
	owed := 0.0
	next := start
	for {
		if ctx.Err() != nil || (*events > 0 && written >= *events) || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			break
		}
		n := int64(1 << 10)
		if *rate > 0 {
			owed += perTick
			n = int64(owed)
			owed -= float64(n)
			next = next.Add(tick)
		}
		if *events > 0 {
			n = min(n, *events-written)
		}
		for range n {
			now := time.Now()
			if mixed {
				buf = g.AppendMixed(buf[:0], now)
			} else {
				buf = g.Append(buf[:0], lvl, now)
			}
			// One write per event, as the API server's log backend does.
			if cur+int64(len(buf)) > int64(*maxSize)<<20 {
				rotations++
				cur = 0
			}
			if _, err := w.Write(buf); err != nil {
				return fmt.Errorf("gen: cannot write %s: %w", *path, err)
			}
			cur += int64(len(buf))
			written++
			bytes += int64(len(buf))
		}
		if *rate > 0 {
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
		}
	}
	el := time.Since(start)
	if *compress {
		// lumberjack compresses in a background goroutine that dies with the
		// process: give it time to finish, so no half-written .gz is left.
		w.Close()
		waitCompressed(*path, 30*time.Second)
	}
	fmt.Fprintf(stdout, "gen: wrote %d events (%s) to %s in %s, %d rotations (seed %d)\n",
		written, humanBytes(bytes), *path, el.Round(time.Millisecond), rotations, *seed)
	return nil
}

// waitCompressed waits until no plain lumberjack backup of path is left. It
// gives up only when compression makes no progress (the .gz backups stop
// growing) for stall: on a loaded machine compressing takes as long as it
// takes.
func waitCompressed(path string, stall time.Duration) {
	ext := filepath.Ext(path)
	base := strings.TrimSuffix(path, ext) + "-*" + ext
	var best int64 = -1
	for since := time.Now(); time.Since(since) < stall; time.Sleep(20 * time.Millisecond) {
		if m, _ := filepath.Glob(base); len(m) == 0 {
			return
		}
		gz, _ := filepath.Glob(base + ".gz")
		var size int64
		for _, f := range gz {
			if fi, err := os.Stat(f); err == nil {
				size += fi.Size()
			}
		}
		if size > best {
			best, since = size, time.Now()
		}
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return strings.TrimSpace(fmt.Sprintf("%d B", n))
}
