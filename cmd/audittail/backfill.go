package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/audittail/audittail/agent"
	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/null"
)

func runBackfill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backfill", "backfill --config FILE [--since T] [--until T] [--dry-run] [PATH|GLOB...]", stderr)
	configPath := fs.String("config", "/etc/audittail/config.yaml", "configuration `FILE`; its outputs receive the events")
	since := fs.String("since", "", "only events with stageTimestamp at or after `T` (RFC 3339, e.g. 2026-11-23T00:00:00Z, or a duration ago like 24h)")
	until := fs.String("until", "", "only events with stageTimestamp before `T` (RFC 3339 or a duration ago)")
	dryRun := fs.Bool("dry-run", false, "read, parse and count, but send nothing and remember nothing")
	giveUp := fs.Duration("give-up-after", 5*time.Minute, "exit with an error if an output keeps failing this long (rerun to resume)")
	restart := fs.Bool("restart", false, "forget where an earlier backfill stopped and start over")
	// Paths and flags may come in any order.
	var paths []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return usageError{err}
		}
		if fs.NArg() == 0 {
			break
		}
		paths = append(paths, fs.Arg(0))
		args = fs.Args()[1:]
	}
	cfg, err := agent.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	bf := agent.Backfill{Paths: paths, DryRun: *dryRun, GiveUpAfter: *giveUp}
	now := time.Now()
	if bf.Since, err = parseTime(*since, now); err != nil {
		return usageError{fmt.Errorf("--since: %w", err)}
	}
	if bf.Until, err = parseTime(*until, now); err != nil {
		return usageError{fmt.Errorf("--until: %w", err)}
	}
	groups, err := agent.BackfillGroups(cfg, paths)
	if err != nil {
		return err
	}
	var files, gz int
	var total int64
	for _, g := range groups {
		files += len(g.Files)
		for _, p := range g.Paths() {
			if strings.HasSuffix(p, ".gz") {
				gz++
			}
		}
		total += g.EstimatedBytes()
	}
	if files == 0 {
		return fmt.Errorf("no files to backfill (looked at %d inputs)", len(cfg.Inputs))
	}

	log := newLogger(stderr, cfg.Log)
	build := buildOutput(log)
	if *dryRun {
		build = func(outputs.Config) (outputs.Output, error) { return null.New(), nil }
	}
	a, err := agent.NewBackfill(cfg, log, build, agent.Options{ResetCheckpoint: *restart, Version: version}, bf, groups)
	if err != nil {
		return err
	}
	start := time.Now()
	stopProgress := func() {}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		stopProgress = progress(f, a, total)
	}
	runErr := a.Run(ctx)
	stopProgress()
	el := time.Since(start)

	// Each output has its own position (a resumed backfill may find one
	// output done and another not): count lines per output, and report the
	// largest as the run's. Bytes read are the input's, shared.
	type outputTotals struct {
		sent                              agent.OutputSnapshot
		read, lines, lost, oversize, torn int64
	}
	var names []string
	per := map[string]*outputTotals{}
	for _, s := range a.Summaries() {
		t := per[s.Output]
		if t == nil {
			t = &outputTotals{sent: s.Sent}
			per[s.Output] = t
			names = append(names, s.Output)
		}
		t.read += s.Read.ReadBytes
		t.lines += s.Read.Lines
		t.lost += s.Read.LostBytes
		t.oversize += s.Read.OversizeLines
		t.torn += s.Read.TornLines
	}
	var run outputTotals
	for _, name := range names {
		if t := per[name]; t.lines >= run.lines {
			run = *t
		}
	}
	mode := ""
	if *dryRun {
		mode = " (dry run: nothing sent)"
	}
	fmt.Fprintf(stdout, "backfill%s: %d files (%d gzipped), %d events, %s read in %s (%s/s, %.0f events/s)\n",
		mode, files, gz, run.lines, humanBytes(run.read), el.Round(time.Millisecond), humanBytes(int64(float64(run.read)/el.Seconds())), float64(run.lines)/el.Seconds())
	fmt.Fprintf(stdout, "  skipped lines: %d oversize, %d incomplete; lost (deleted before read): %s\n", run.oversize, run.torn, humanBytes(run.lost))
	undelivered := run.lost > 0
	for _, name := range names {
		t := per[name]
		o := t.sent
		var perrs int64
		for _, n := range o.ParseErrors {
			perrs += n
		}
		fmt.Fprintf(stdout, "  output %s: read %d, delivered %d, dead-lettered %d, filtered out %d, invalid lines %d (dropped %d), retries %d\n",
			name, t.lines, o.Events, o.DeadLettered, o.Filtered, perrs, o.ParseDropped, o.Retries)
		if o.DeadLettered > 0 || o.Events+o.Filtered+o.ParseDropped+o.DeadLettered < t.lines {
			undelivered = true
		}
	}
	if runErr != nil {
		return runErr
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted; run the same command again to resume")
	}
	if undelivered {
		return fmt.Errorf("not everything was delivered (see above)")
	}
	return nil
}

// parseTime accepts RFC 3339 or a duration meaning that long before now.
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("invalid time %q (want RFC 3339 like 2026-11-23T10:00:00Z, or a duration like 24h)", s)
}

// progress draws a one-line progress bar on a terminal until stopped.
func progress(w io.Writer, a *agent.Agent, total int64) func() {
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			var read, events int64
			seen := map[string]bool{}
			for _, s := range a.Summaries() {
				if !seen[s.Input] {
					seen[s.Input] = true
					read += s.Read.ReadBytes
				}
				events = max(events, s.Sent.Events)
			}
			frac := 0.0
			if total > 0 {
				frac = min(1, float64(read)/float64(total))
			}
			eta := "?"
			if el := time.Since(start); frac > 0.01 {
				eta = (time.Duration(float64(el)/frac) - el).Round(time.Second).String()
			}
			const width = 30
			bar := strings.Repeat("=", int(frac*width)) + strings.Repeat(" ", width-int(frac*width))
			fmt.Fprintf(w, "\r[%s] %3.0f%% %s/%s, %d events, ETA %s   ", bar, frac*100, humanBytes(read), humanBytes(total), events, eta)
			select {
			case <-done:
				fmt.Fprint(w, "\n")
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}
