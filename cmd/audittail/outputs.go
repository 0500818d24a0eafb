package main

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/elasticsearch"
	"github.com/audittail/audittail/outputs/file"
	"github.com/audittail/audittail/outputs/fluentd"
	"github.com/audittail/audittail/outputs/ibmcloudlogs"
	"github.com/audittail/audittail/outputs/kafka"
	"github.com/audittail/audittail/outputs/logdna"
	"github.com/audittail/audittail/outputs/null"
	"github.com/audittail/audittail/outputs/otlp"
	"github.com/audittail/audittail/outputs/syslog"
	webhookout "github.com/audittail/audittail/outputs/webhook"
)

// outputType is one row of the factory table.
type outputType struct {
	// build makes the output from its config entry.
	build func(c outputs.Config, log *slog.Logger) (outputs.Output, error)
	// options is the type's Options struct: its yaml keys are the type's
	// keys (docs/configuration.md must list them; a test checks).
	options any
}

// outputTypes is the one table of output types.
var outputTypes = map[string]outputType{
	"file": {func(c outputs.Config, log *slog.Logger) (outputs.Output, error) { return file.FromConfig(c, log) }, file.Options{}},
	"stdout": {func(c outputs.Config, _ *slog.Logger) (outputs.Output, error) {
		if err := c.DecodeOptions(&struct{}{}); err != nil {
			return nil, err
		}
		return file.NewWriter(os.Stdout, "stdout"), nil
	}, struct{}{}},
	"null": {func(c outputs.Config, _ *slog.Logger) (outputs.Output, error) {
		if err := c.DecodeOptions(&struct{}{}); err != nil {
			return nil, err
		}
		return null.New(), nil
	}, struct{}{}},
	"fluentd": {func(c outputs.Config, log *slog.Logger) (outputs.Output, error) { return fluentd.FromConfig(c, log) }, fluentd.Options{}},
	"logdna": {func(c outputs.Config, log *slog.Logger) (outputs.Output, error) {
		o, err := logdna.DecodeOptions(c)
		if err != nil {
			return nil, err
		}
		o.UserAgent = "audittail/" + version
		return logdna.New(o, log)
	}, logdna.Options{}},
	"syslog": {func(c outputs.Config, log *slog.Logger) (outputs.Output, error) { return syslog.FromConfig(c, log) }, syslog.Options{}},
	"otlp": {func(c outputs.Config, log *slog.Logger) (outputs.Output, error) {
		o, err := otlp.DecodeOptions(c)
		if err != nil {
			return nil, err
		}
		o.Version = version
		return otlp.New(o, log)
	}, otlp.Options{}},
	"elasticsearch": {func(c outputs.Config, log *slog.Logger) (outputs.Output, error) {
		o, err := elasticsearch.DecodeOptions(c)
		if err != nil {
			return nil, err
		}
		o.UserAgent = "audittail/" + version
		return elasticsearch.New(o, log)
	}, elasticsearch.Options{}},
	"ibmcloudlogs": {func(c outputs.Config, log *slog.Logger) (outputs.Output, error) {
		o, err := ibmcloudlogs.DecodeOptions(c)
		if err != nil {
			return nil, err
		}
		o.UserAgent = "audittail/" + version
		return ibmcloudlogs.New(o, log)
	}, ibmcloudlogs.Options{}},
	"webhook": {func(c outputs.Config, log *slog.Logger) (outputs.Output, error) {
		o, err := webhookout.DecodeOptions(c)
		if err != nil {
			return nil, err
		}
		o.UserAgent = "audittail/" + version
		return webhookout.New(o, log)
	}, webhookout.Options{}},
	// kafka: outputs/kafka (franz-go).
	"kafka": {func(c outputs.Config, log *slog.Logger) (outputs.Output, error) { return kafka.FromConfig(c, log) }, kafka.Options{}},
}

// buildOutput makes the output a config entry describes.
func buildOutput(log *slog.Logger) func(outputs.Config) (outputs.Output, error) {
	return func(c outputs.Config) (outputs.Output, error) {
		t, ok := outputTypes[c.Type]
		if !ok {
			names := make([]string, 0, len(outputTypes))
			for n := range outputTypes {
				names = append(names, n)
			}
			slices.Sort(names)
			return nil, fmt.Errorf("unknown output type %q (want %s)", c.Type, strings.Join(names, ", "))
		}
		return t.build(c, log)
	}
}
