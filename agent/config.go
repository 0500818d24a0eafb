package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/audittail/audittail/outputs"
)

// Config is the agent's configuration file. Defaults fills the zero values;
// Validate names the first offending option.
type Config struct {
	// StateDir holds the checkpoint.
	StateDir string `yaml:"state_dir"`
	// Inputs are the audit logs to follow.
	Inputs []InputConfig `yaml:"inputs"`
	// Batch says when a batch is closed and sent.
	Batch BatchConfig `yaml:"batch"`
	// Outputs each get their own batches, retries and position; all share
	// one reader per input.
	Outputs []outputs.Config `yaml:"outputs"`
	// CheckpointInterval is how often the checkpoint is fsynced. It is
	// written (atomically, into the page cache) after every acknowledged
	// batch, so a crash of the agent re-sends at most one batch; a crash of
	// the machine re-sends at most what was acknowledged in this interval.
	// Default 1s; a tiny value (1ms) fsyncs after nearly every batch.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// ShutdownTimeout bounds the flush of in-flight batches on SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MaxLineBytes skips (and counts) longer lines.
	MaxLineBytes ByteSize `yaml:"max_line_bytes"`
	// PollInterval is how often files are stat'ed besides inotify events.
	PollInterval time.Duration `yaml:"poll_interval"`
	// MaxInflight bounds the batches per output that are read but not yet
	// acknowledged; the reader waits when they are all in flight.
	MaxInflight int `yaml:"max_inflight"`
	// Log configures the agent's own log.
	Log LogConfig `yaml:"log"`
	// Metrics configures the /metrics, /healthz and /readyz endpoints.
	Metrics MetricsConfig `yaml:"metrics"`
	// Filters is reserved for event filtering (the design card's
	// `filters: {}`); only an empty mapping is accepted today.
	Filters map[string]any `yaml:"filters"`
}

// MetricsConfig configures the HTTP endpoints.
type MetricsConfig struct {
	// Listen is host:port, or off. Default 127.0.0.1:9880.
	Listen string `yaml:"listen"`
	// UnreadyAfter is how long an output may keep failing before /readyz
	// reports unready. Default 30s.
	UnreadyAfter time.Duration `yaml:"unready_after"`
}

// InputConfig is one audit log.
type InputConfig struct {
	// Path is the live file, e.g. /var/log/kubernetes/audit/audit.log; its
	// lumberjack backups are found beside it.
	Path string `yaml:"path"`
	// StartAt applies on the first start only (no checkpoint): end skips
	// what the live file already holds, beginning reads it from offset 0.
	StartAt StartAt `yaml:"start_at"`
}

// BatchConfig closes a batch on whichever limit comes first.
type BatchConfig struct {
	MaxEvents int           `yaml:"max_events"`
	MaxBytes  ByteSize      `yaml:"max_bytes"`
	MaxWait   time.Duration `yaml:"max_wait"`
}

// LogConfig configures the agent's log on stderr.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// StartAt is where a first start reads the live file from.
type StartAt string

// StartAt values.
const (
	StartEnd       StartAt = "end"
	StartBeginning StartAt = "beginning"
)

// UnmarshalText accepts beginning or end.
func (s *StartAt) UnmarshalText(b []byte) error {
	switch v := StartAt(b); v {
	case StartEnd, StartBeginning:
		*s = v
		return nil
	}
	return fmt.Errorf("invalid start_at %q (want beginning or end)", b)
}

// ByteSize is a size in bytes: a number, or a string with a unit (512KiB,
// 4MiB, 1GiB; KB, MB, GB are powers of 1000).
type ByteSize = outputs.ByteSize

// Defaults fills unset options with their default values.
func (c *Config) Defaults() {
	if c.StateDir == "" {
		c.StateDir = "/var/lib/audittail"
	}
	for i := range c.Inputs {
		if c.Inputs[i].StartAt == "" {
			c.Inputs[i].StartAt = StartEnd
		}
	}
	if c.Batch.MaxEvents == 0 {
		c.Batch.MaxEvents = 1000
	}
	if c.Batch.MaxBytes == 0 {
		c.Batch.MaxBytes = 4 << 20
	}
	if c.Batch.MaxWait == 0 {
		c.Batch.MaxWait = time.Second
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = 8 << 20
	}
	if c.PollInterval == 0 {
		c.PollInterval = 250 * time.Millisecond
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = 4
	}
	if c.Metrics.Listen == "" {
		c.Metrics.Listen = "127.0.0.1:9880"
	}
	if c.Metrics.UnreadyAfter == 0 {
		c.Metrics.UnreadyAfter = 30 * time.Second
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	for i := range c.Outputs {
		o := &c.Outputs[i]
		if o.Name == "" {
			o.Name = o.Type
		}
		if o.OnParseError == "" {
			o.OnParseError = "forward"
		}
		if o.DeadLetter == "" {
			o.DeadLetter = filepath.Join(c.StateDir, "deadletter", o.Name+".jsonl")
		}
	}
}

// Validate checks the options after Defaults and names the first bad one.
func (c *Config) Validate() error {
	if len(c.Inputs) == 0 {
		return errors.New("inputs: at least one input is required")
	}
	seen := map[string]bool{}
	for i, in := range c.Inputs {
		if in.Path == "" {
			return fmt.Errorf("inputs[%d].path: required", i)
		}
		if !filepath.IsAbs(in.Path) {
			return fmt.Errorf("inputs[%d].path: %q must be an absolute path", i, in.Path)
		}
		if seen[in.Path] {
			return fmt.Errorf("inputs[%d].path: %q is listed twice", i, in.Path)
		}
		seen[in.Path] = true
	}
	if len(c.Outputs) == 0 {
		return errors.New("outputs: at least one output is required")
	}
	if len(c.Filters) > 0 {
		return errors.New("filters: event filtering is not available in this version; leave filters empty ({}) or remove it")
	}
	names := map[string]bool{}
	for i, o := range c.Outputs {
		if o.Type == "" {
			return fmt.Errorf("outputs[%d].type: required", i)
		}
		switch o.OnParseError {
		case "forward", "drop":
		default:
			return fmt.Errorf("outputs[%d] (%s): invalid on_parse_error %q (want forward or drop)", i, o.Type, o.OnParseError)
		}
		if names[o.Name] {
			return fmt.Errorf("outputs[%d].name: %q is used twice (names key the checkpoint, so they must be unique)", i, o.Name)
		}
		names[o.Name] = true
	}
	switch {
	case c.Batch.MaxEvents < 0:
		return fmt.Errorf("batch.max_events: must be positive, not %d", c.Batch.MaxEvents)
	case c.Batch.MaxBytes < 1024:
		return fmt.Errorf("batch.max_bytes: %d is too small (at least 1KiB)", c.Batch.MaxBytes)
	case c.Batch.MaxWait < 0:
		return fmt.Errorf("batch.max_wait: must not be negative")
	case c.CheckpointInterval < 0:
		return fmt.Errorf("checkpoint_interval: must not be negative")
	case c.ShutdownTimeout < 0:
		return fmt.Errorf("shutdown_timeout: must not be negative")
	case c.MaxLineBytes < 1024:
		return fmt.Errorf("max_line_bytes: %d is too small (at least 1KiB)", c.MaxLineBytes)
	case c.PollInterval < 10*time.Millisecond:
		return fmt.Errorf("poll_interval: %s is too short (at least 10ms)", c.PollInterval)
	case c.MaxInflight < 1:
		return fmt.Errorf("max_inflight: must be at least 1, not %d", c.MaxInflight)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: invalid value %q (want debug, info, warn or error)", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format: invalid value %q (want text or json)", c.Log.Format)
	}
	return nil
}

var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${NAME} with the environment variable NAME; an unset
// variable is an error, so a typo does not become an empty value.
func expandEnv(data []byte) ([]byte, error) {
	var missing []string
	out := envRef.ReplaceAllFunc(data, func(m []byte) []byte {
		name := string(m[2 : len(m)-1])
		v, ok := os.LookupEnv(name)
		if !ok {
			missing = append(missing, name)
		}
		return []byte(v)
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("environment variable %s is not set (referenced as ${%s})", missing[0], missing[0])
	}
	return out, nil
}

// ParseConfig decodes a YAML configuration strictly: unknown keys are errors
// that name the key and its line. It applies Defaults and Validate.
func ParseConfig(data []byte) (*Config, error) {
	data, err := expandEnv(data)
	if err != nil {
		return nil, err
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the configuration is empty")
		}
		msg := strings.ReplaceAll(strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n  "), "\n  ", "; ")
		msg = unknownField.ReplaceAllString(msg, `unknown key "$1"`)
		return nil, errors.New(msg)
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// LoadConfig reads and parses a configuration file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}
