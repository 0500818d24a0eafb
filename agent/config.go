package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
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
	// AddAnnotations are added to every event of every input (an input's
	// own add_annotations win for the same key).
	AddAnnotations map[string]string `yaml:"add_annotations"`
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

// Input types.
const (
	InputFile    = "file"
	InputWebhook = "webhook"
)

// InputConfig is one source of audit events: a log file (type file, the
// default) or kube-apiserver's webhook backend (type webhook).
type InputConfig struct {
	// Type is file (default) or webhook.
	Type string `yaml:"type"`
	// Path: for a file input, the live file, e.g.
	// /var/log/kubernetes/audit/audit.log (its backups are found beside
	// it); for a webhook input, the URL path it answers (default /).
	Path string `yaml:"path"`
	// StartAt applies on the first start only (no checkpoint): end skips
	// what the live file already holds, beginning reads it from offset 0.
	// File inputs only.
	StartAt StartAt `yaml:"start_at"`
	// AddAnnotations are added to every event's annotations (e.g.
	// audittail.io/cluster: prod-eu-1), over the top-level ones.
	AddAnnotations map[string]string `yaml:"add_annotations"`

	// The webhook input's options.

	// Listen is the address to listen on, host:port.
	Listen string `yaml:"listen"`
	// TLS is the listener's certificate; required unless Insecure.
	TLS ListenerTLS `yaml:"tls"`
	// Insecure serves plain HTTP (and says so in the log).
	Insecure bool `yaml:"insecure"`
	// Auth says what a request must carry.
	Auth WebhookAuth `yaml:"auth"`
	// MaxBodyBytes bounds a request body (default 12MiB).
	MaxBodyBytes ByteSize `yaml:"max_body_bytes"`
	// Spool is where requests are kept until every output acknowledged them.
	Spool SpoolConfig `yaml:"spool"`
}

// ListenerTLS is a listener's certificate and, optionally, the CA its
// clients' certificates must be signed by.
type ListenerTLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// WebhookAuth is what a webhook request must carry: a bearer token, a
// client certificate verified against tls.client_ca_file, or both.
type WebhookAuth struct {
	BearerTokenFile string `yaml:"bearer_token_file"`
}

// SpoolConfig is the webhook input's spool.
type SpoolConfig struct {
	Dir      string   `yaml:"dir"`
	MaxBytes ByteSize `yaml:"max_bytes"`
}

// Key names the input in the checkpoint, metrics and logs: a file input's
// path; a webhook input's spool dir after "webhook:" (its positions are
// positions in the spool, whatever address it listens on).
func (in InputConfig) Key() string {
	if in.Type == InputWebhook {
		return "webhook:" + in.Spool.Dir
	}
	return in.Path
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
		in := &c.Inputs[i]
		if in.Type == "" {
			in.Type = InputFile
		}
		switch in.Type {
		case InputFile:
			if in.StartAt == "" {
				in.StartAt = StartEnd
			}
		case InputWebhook:
			if in.Path == "" {
				in.Path = "/"
			}
			if in.MaxBodyBytes == 0 {
				in.MaxBodyBytes = 12 << 20
			}
			if in.Spool.MaxBytes == 0 {
				in.Spool.MaxBytes = 2 << 30
			}
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
	for i := range c.Inputs {
		in := &c.Inputs[i]
		var err error
		switch in.Type {
		case InputFile:
			err = in.validateFile()
		case InputWebhook:
			err = in.validateWebhook()
		default:
			err = fmt.Errorf("type: unknown input type %q (want file or webhook)", in.Type)
		}
		if err != nil {
			return fmt.Errorf("inputs[%d].%w", i, err)
		}
		if seen[in.Key()] {
			return fmt.Errorf("inputs[%d]: %q is listed twice", i, in.Key())
		}
		seen[in.Key()] = true
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

var unknownField = regexp.MustCompile(`field (\S+) not found in type (\S+)`)

// keyPrefix names where a type's keys sit, for unknown-key errors.
var keyPrefix = map[string]string{
	"agent.InputConfig": "inputs[].", "agent.ListenerTLS": "inputs[].tls.", "agent.WebhookAuth": "inputs[].auth.",
	"agent.SpoolConfig": "inputs[].spool.", "agent.BatchConfig": "batch.", "agent.LogConfig": "log.",
	"agent.MetricsConfig": "metrics.",
}

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
		msg = unknownField.ReplaceAllStringFunc(msg, func(m string) string {
			sub := unknownField.FindStringSubmatch(m)
			return fmt.Sprintf("unknown key %q", keyPrefix[sub[2]]+sub[1])
		})
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

func (in *InputConfig) validateFile() error {
	switch {
	case in.Path == "":
		return errors.New("path: required")
	case !filepath.IsAbs(in.Path):
		return fmt.Errorf("path: %q must be an absolute path", in.Path)
	}
	for _, k := range []struct {
		key string
		set bool
	}{
		{"listen", in.Listen != ""}, {"tls", in.TLS != ListenerTLS{}}, {"insecure", in.Insecure},
		{"auth", in.Auth != WebhookAuth{}}, {"max_body_bytes", in.MaxBodyBytes != 0}, {"spool", in.Spool != SpoolConfig{}},
	} {
		if k.set {
			return fmt.Errorf("%s: only a webhook input has it (set type: webhook, or remove it)", k.key)
		}
	}
	return nil
}

func (in *InputConfig) validateWebhook() error {
	if in.StartAt != "" {
		return errors.New("start_at: only a file input has it (a webhook input delivers everything it spooled)")
	}
	if in.Listen == "" {
		return errors.New("listen: required for a webhook input (host:port, e.g. 0.0.0.0:8443)")
	}
	if _, port, err := net.SplitHostPort(in.Listen); err != nil || port == "" {
		return fmt.Errorf("listen: %q is not host:port", in.Listen)
	}
	if !strings.HasPrefix(in.Path, "/") {
		return fmt.Errorf("path: %q must start with / (the URL path the webhook kubeconfig names)", in.Path)
	}
	switch t := in.TLS; {
	case in.Insecure && t != ListenerTLS{}:
		return errors.New("insecure: true serves plain HTTP, so tls must be empty")
	case !in.Insecure && (t.CertFile == "" || t.KeyFile == ""):
		return errors.New("tls: cert_file and key_file are required (or insecure: true for plain HTTP, which kube-apiserver's token then crosses in clear)")
	case in.Insecure && in.Auth.BearerTokenFile == "":
		// Allowed, and said loudly at start.
	}
	if in.MaxBodyBytes < 1024 {
		return fmt.Errorf("max_body_bytes: %d is too small (at least 1KiB; kube-apiserver posts up to --audit-webhook-batch-max-size events)", in.MaxBodyBytes)
	}
	switch {
	case in.Spool.Dir == "":
		return errors.New("spool.dir: required for a webhook input")
	case !filepath.IsAbs(in.Spool.Dir):
		return fmt.Errorf("spool.dir: %q must be an absolute path", in.Spool.Dir)
	case in.Spool.MaxBytes < 1<<20:
		return fmt.Errorf("spool.max_bytes: %d is too small (at least 1MiB)", in.Spool.MaxBytes)
	case in.Spool.MaxBytes < 4*in.MaxBodyBytes:
		return fmt.Errorf("spool.max_bytes: %d must hold at least 4 requests of max_body_bytes (%d)", in.Spool.MaxBytes, in.MaxBodyBytes)
	}
	return nil
}
