// Command audittail follows the Kubernetes API server's audit log through
// every rotation and ships each event at least once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/audittail/audittail/agent"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `audittail ships the Kubernetes API server's audit log (audit.k8s.io/v1
events, one JSON object per line, rotated by lumberjack) to outputs, at least
once, following every rotation.

Usage:
  audittail run --config FILE        follow the audit log and ship it (default command)
  audittail backfill --config FILE   ship old rotated files (plain and .gz) once, then exit
  audittail validate --config FILE   check a configuration (--connect: and the outputs)
  audittail gen --path FILE          write realistic audit events as kube-apiserver does
  audittail gen --webhook URL        post them as kube-apiserver's audit webhook does (checks a webhook input)
  audittail version                  print the version

Run 'audittail COMMAND --help' for a command's flags.
`

func main() {
	// The first SIGTERM/SIGINT stops reading and flushes; a second one
	// exits at once. One channel catches both, so no signal falls between
	// two handlers.
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		<-signals
		stop()
		<-signals
		fmt.Fprintln(os.Stderr, "audittail: second signal, exiting without waiting for in-flight batches")
		os.Exit(130)
	}()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "audittail:", err)
		}
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

type usageError struct{ error }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			fmt.Fprint(stdout, usage)
			return nil
		}
	}
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runAgent(ctx, args, stderr)
	case "gen":
		return runGen(ctx, args, stdout, stderr)
	case "validate":
		return runValidate(ctx, args, stdout, stderr)
	case "backfill":
		return runBackfill(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "audittail", version)
		return nil
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Errorf("unknown command %q", cmd)}
}

func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: audittail %s\n\nFlags:\n", synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			arg, usage := flag.UnquoteUsage(f)
			name := "--" + f.Name
			if arg != "" {
				name += " " + strings.ToUpper(arg)
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
				def = " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(stderr, "  %-26s %s%s\n", name, usage, def)
		})
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

func runAgent(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("run", "run --config FILE [--reset-checkpoint]", stderr)
	configPath := fs.String("config", "/etc/audittail/config.yaml", "configuration `FILE` (YAML; see docs/configuration.md)")
	reset := fs.Bool("reset-checkpoint", false, "move a corrupt or unwanted checkpoint aside and start as on a first start (start_at applies)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := agent.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.Log)
	a, err := agent.New(cfg, log, buildOutput(log), agent.Options{ResetCheckpoint: *reset, Version: version})
	if err != nil {
		return err
	}
	ln, err := agent.ListenMetrics(cfg.Metrics, log)
	if err != nil {
		return err
	}
	serveCtx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	if ln != nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(a.Collector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		go func() {
			if err := a.Serve(serveCtx, ln, reg); err != nil {
				log.Error("metrics server stopped", "error", err)
			}
		}()
	}
	log.Info("audittail started", "version", version, "config", *configPath, "state_dir", cfg.StateDir)
	if err := a.Run(ctx); err != nil {
		return err
	}
	log.Info("audittail stopped")
	return nil
}

func newLogger(w io.Writer, c agent.LogConfig) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
