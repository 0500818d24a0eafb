package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/audittail/audittail/agent"
	"github.com/audittail/audittail/outputs"
)

func runValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", "validate --config FILE [--connect]", stderr)
	configPath := fs.String("config", "/etc/audittail/config.yaml", "configuration `FILE` to check")
	connect := fs.Bool("connect", false, "also connect to each output (handshake, TLS, auth) without sending events")
	timeout := fs.Duration("timeout", 10*time.Second, "time limit for each --connect check")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := agent.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	build := buildOutput(log)
	var failed int
	for i, oc := range cfg.Outputs {
		out, err := build(oc)
		if err != nil {
			return fmt.Errorf("outputs[%d] (%s %q): %w", i, oc.Type, oc.Name, err)
		}
		if _, err := agent.LoadOutputPolicy(oc); err != nil {
			out.Close(ctx)
			return fmt.Errorf("outputs[%d] (%s %q): %w", i, oc.Type, oc.Name, err)
		}
		status := "ok"
		if *connect {
			if c, ok := out.(outputs.Checker); ok {
				cctx, cancel := context.WithTimeout(ctx, *timeout)
				err := c.Check(cctx)
				cancel()
				if err != nil {
					status, failed = "UNREACHABLE: "+err.Error(), failed+1
				} else {
					status = "reachable"
				}
			} else {
				status = "ok (nothing to connect to)"
			}
		}
		out.Close(ctx)
		fmt.Fprintf(stdout, "output %s (%s): %s\n", oc.Name, oc.Type, status)
	}
	for i, in := range cfg.Inputs {
		if in.Type == agent.InputWebhook {
			desc, err := agent.CheckWebhookInput(in)
			if err != nil {
				return fmt.Errorf("inputs[%d] (webhook %s): %w", i, in.Key(), err)
			}
			fmt.Fprintf(stdout, "input %s: %s\n", in.Key(), desc)
			continue
		}
		fmt.Fprintf(stdout, "input %s (start_at %s)\n", in.Path, in.StartAt)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d outputs unreachable", failed, len(cfg.Outputs))
	}
	fmt.Fprintf(stdout, "config %s is valid\n", *configPath)
	return nil
}
