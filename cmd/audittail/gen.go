package main

import (
	"context"
	"flag"
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
	fs := newFlagSet("gen", "gen (--path FILE [--maxsize MB] [--maxbackup N] [--compress] | --webhook URL [--batch N] [--clients N] [--ca-file FILE] [--cert-file FILE --key-file FILE] [--token-file FILE]) [--events N | --duration D] [--rate N]", stderr)
	path := fs.String("path", "", "audit log `FILE` to write, like kube-apiserver's --audit-log-path (this or --webhook)")
	webhook := fs.String("webhook", "", "POST EventLists to this `URL`, like kube-apiserver's audit webhook backend, e.g. https://10.96.0.100:8443/audit/webhook/event (this or --path)")
	batch := fs.Int("batch", 400, "events per request (`N`), like --audit-webhook-batch-max-size (--webhook)")
	clients := fs.Int("clients", 1, "concurrent posters (`N`) (--webhook)")
	caFile := fs.String("ca-file", "", "PEM CA bundle `FILE` that signs the webhook's certificate (default: the system roots) (--webhook)")
	certFile := fs.String("cert-file", "", "client certificate `FILE` (PEM), like the kubeconfig's client-certificate (--webhook)")
	keyFile := fs.String("key-file", "", "its private key `FILE` (PEM) (--webhook)")
	tokenFile := fs.String("token-file", "", "`FILE` holding the bearer token, like the kubeconfig's token; never on the command line (--webhook)")
	timeout := fs.Duration("timeout", 30*time.Second, "time limit of one request, answer included (--webhook)")
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
	if (*path == "") == (*webhook == "") {
		return usageError{fmt.Errorf("gen: exactly one of --path and --webhook is required")}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	mode, other := "--path", []string{"batch", "clients", "ca-file", "cert-file", "key-file", "token-file", "timeout"}
	if *webhook != "" {
		mode, other = "--webhook", []string{"maxsize", "maxbackup", "maxage", "compress"}
	}
	for _, name := range other {
		if set[name] {
			return usageError{fmt.Errorf("gen: --%s does not apply with %s", name, mode)}
		}
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
	if *webhook != "" {
		return genWebhook(ctx, webhookGen{
			url: *webhook, batch: *batch, clients: *clients, timeout: *timeout,
			caFile: *caFile, certFile: *certFile, keyFile: *keyFile, tokenFile: *tokenFile,
			rate: *rate, events: *events, duration: *duration, seed: *seed, level: lvl, mixed: mixed,
		}, stdout)
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
