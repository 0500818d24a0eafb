package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/file"
	"github.com/audittail/audittail/outputs/fluentd"
	"github.com/audittail/audittail/outputs/logdna"
	"github.com/audittail/audittail/outputs/null"
)

// outputFactories is the one table of output types.
func outputFactories(log *slog.Logger) map[string]func(outputs.Config) (outputs.Output, error) {
	return map[string]func(outputs.Config) (outputs.Output, error){
		"file": func(c outputs.Config) (outputs.Output, error) { return file.FromConfig(c, log) },
		"stdout": func(c outputs.Config) (outputs.Output, error) {
			if err := c.DecodeOptions(&struct{}{}); err != nil {
				return nil, err
			}
			return file.NewWriter(os.Stdout, "stdout"), nil
		},
		"fluentd": func(c outputs.Config) (outputs.Output, error) { return fluentd.FromConfig(c, log) },
		"logdna": func(c outputs.Config) (outputs.Output, error) {
			o, err := logdna.DecodeOptions(c)
			if err != nil {
				return nil, err
			}
			o.UserAgent = "audittail/" + version
			return logdna.New(o, log)
		},
		"null": func(c outputs.Config) (outputs.Output, error) {
			if err := c.DecodeOptions(&struct{}{}); err != nil {
				return nil, err
			}
			return null.New(), nil
		},
	}
}

// buildOutput makes the output a config entry describes.
func buildOutput(log *slog.Logger) func(outputs.Config) (outputs.Output, error) {
	table := outputFactories(log)
	return func(c outputs.Config) (outputs.Output, error) {
		f, ok := table[c.Type]
		if !ok {
			return nil, fmt.Errorf("unknown output type %q (want file, stdout, null, fluentd or logdna)", c.Type)
		}
		return f(c)
	}
}
