package fluentd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/audittail/audittail/outputs"
)

// Defaults of the fluentd output's keys.
const (
	DefaultTag          = "kube.audit"
	DefaultPort         = "24224"
	DefaultAckTimeout   = 60 * time.Second
	DefaultDialTimeout  = 10 * time.Second
	DefaultWriteTimeout = 30 * time.Second
	DefaultKeepalive    = 30 * time.Second
	// DefaultMaxRecordBytes keeps a message with one large event under
	// Fluent Bit in_forward's 6 MB Buffer_Max_Size.
	DefaultMaxRecordBytes = 4 << 20
)

// Options are the `fluentd` output's keys.
type Options struct {
	// Address is host:port, tcp://host:port, tls://host:port or unix:///path (required; port defaults to 24224).
	Address string `yaml:"address"`
	// Tag is the Fluentd tag of every event (default kube.audit).
	Tag string `yaml:"tag"`
	// Compress is none (default) or gzip: each batch is then one CompressedPackedForward message.
	Compress string `yaml:"compress"`
	// AckTimeout is how long Send waits for the receiver's ack before it gives up and the batch is resent (default 60s).
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// DialTimeout bounds connecting, including the TLS and shared_key handshakes (default 10s).
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// WriteTimeout bounds writing one batch to the connection (default 30s).
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// Keepalive is the TCP keepalive idle time (default 30s; negative disables TCP keepalive).
	Keepalive time.Duration `yaml:"keepalive"`
	// MaxRecordBytes bounds one event (default 4MiB, under Fluent Bit's 6 MB buffer): a longer one is sent without its responseObject (then requestObject), or rejected (dead-lettered) if still too long.
	MaxRecordBytes outputs.ByteSize `yaml:"max_record_bytes"`
	// SharedKeyFile holds the shared_key for the HELO/PING/PONG handshake; trailing newlines are ignored (default: no handshake).
	SharedKeyFile string `yaml:"shared_key_file"`
	// SharedKeyEnv names an environment variable that holds the shared_key, instead of shared_key_file.
	SharedKeyEnv string `yaml:"shared_key_env"`
	// SelfHostname is the client hostname sent in the handshake (default: os.Hostname()).
	SelfHostname string `yaml:"self_hostname"`
	// Username authenticates the client in the handshake when the receiver has <user> entries (default: none).
	Username string `yaml:"username"`
	// PasswordFile holds the password for username (default: none).
	PasswordFile string `yaml:"password_file"`
	// PasswordEnv names an environment variable that holds the password, instead of password_file.
	PasswordEnv string `yaml:"password_env"`
	// TLS configures tls:// addresses; server certificates are verified unless tls.insecure_skip_verify is set.
	TLS TLSOptions `yaml:"tls"`
}

// TLSOptions are the keys under `tls:`, as for every network output.
type TLSOptions = outputs.TLSOptions

// settings are validated Options, ready to dial.
type settings struct {
	network string // tcp or unix
	addr    string // host:port or path
	display string // the address as configured, for messages
	useTLS  bool
	tls     *tls.Config

	tag          string
	gzip         bool
	ackTimeout   time.Duration
	dialTimeout  time.Duration
	writeTimeout time.Duration
	keepalive    time.Duration
	maxRecord    int

	sharedKey []byte // nil: no handshake
	hostname  string
	username  string
	password  []byte
}

// validate checks o, fills in the defaults and reads the secrets and the
// TLS files. Every error names the key.
func (o Options) validate() (*settings, error) {
	s := &settings{
		tag:          o.Tag,
		ackTimeout:   o.AckTimeout,
		dialTimeout:  o.DialTimeout,
		writeTimeout: o.WriteTimeout,
		keepalive:    o.Keepalive,
		hostname:     o.SelfHostname,
		username:     o.Username,
	}
	if err := parseAddress(o.Address, s); err != nil {
		return nil, err
	}
	if s.tag == "" {
		s.tag = DefaultTag
	}
	switch o.Compress {
	case "", "none":
	case "gzip":
		s.gzip = true
	default:
		return nil, fmt.Errorf("compress: unknown value %q (want none or gzip)", o.Compress)
	}
	for _, d := range []struct {
		key string
		v   *time.Duration
		def time.Duration
	}{
		{"ack_timeout", &s.ackTimeout, DefaultAckTimeout},
		{"dial_timeout", &s.dialTimeout, DefaultDialTimeout},
		{"write_timeout", &s.writeTimeout, DefaultWriteTimeout},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("%s: must not be negative, got %s", d.key, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if s.keepalive == 0 {
		s.keepalive = DefaultKeepalive
	}
	switch {
	case o.MaxRecordBytes < 0:
		return nil, fmt.Errorf("max_record_bytes: must not be negative")
	case o.MaxRecordBytes == 0:
		s.maxRecord = DefaultMaxRecordBytes
	case o.MaxRecordBytes < 1024:
		return nil, fmt.Errorf("max_record_bytes: %d is too small (at least 1KiB)", o.MaxRecordBytes)
	default:
		s.maxRecord = int(o.MaxRecordBytes)
	}

	key, err := readSecret("shared_key", o.SharedKeyFile, o.SharedKeyEnv)
	if err != nil {
		return nil, err
	}
	s.sharedKey = key
	pw, err := readSecret("password", o.PasswordFile, o.PasswordEnv)
	if err != nil {
		return nil, err
	}
	s.password = pw
	if (o.Username != "" || pw != nil) && key == nil {
		return nil, errors.New("username: the forward protocol authenticates users only in the shared_key handshake; set shared_key_file or shared_key_env too")
	}
	if pw != nil && o.Username == "" {
		return nil, errors.New("username: required when password_file or password_env is set")
	}
	if key != nil && s.hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return nil, fmt.Errorf("self_hostname: required, the system hostname is unknown: %v", err)
		}
		s.hostname = h
	}

	if !s.useTLS {
		if o.TLS.IsSet() {
			return nil, fmt.Errorf("tls: set, but address %q is not tls://host:port", o.Address)
		}
		return s, nil
	}
	s.tls, err = tlsConfig(o.TLS, s.addr)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// parseAddress fills s.network, s.addr, s.display and s.useTLS.
func parseAddress(a string, s *settings) error {
	s.display = a
	if a == "" {
		return errors.New("address: required (host:port, tcp://host:port, tls://host:port or unix:///path)")
	}
	scheme, rest, found := strings.Cut(a, "://")
	if !found {
		scheme, rest = "tcp", a
	}
	switch scheme {
	case "unix":
		if rest == "" || !strings.HasPrefix(rest, "/") {
			return fmt.Errorf("address: %q: want unix:///absolute/path", a)
		}
		s.network, s.addr = "unix", rest
		return nil
	case "tcp", "tls":
		s.network, s.useTLS = "tcp", scheme == "tls"
	default:
		return fmt.Errorf("address: %q: unknown scheme %q (want tcp://, tls:// or unix://)", a, scheme)
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		// A host alone gets the default port.
		if strings.Contains(rest, "/") || strings.Count(rest, ":") == 1 {
			return fmt.Errorf("address: %q: %v", a, err)
		}
		host, port = strings.Trim(rest, "[]"), DefaultPort
	}
	if host == "" {
		return fmt.Errorf("address: %q: missing host", a)
	}
	if port == "" {
		port = DefaultPort
	}
	s.addr = net.JoinHostPort(host, port)
	return nil
}

// readSecret reads a secret from file or from the environment variable env.
// It returns nil when neither is set. The secret is never put in an error.
func readSecret(name, file, env string) ([]byte, error) {
	switch {
	case file != "" && env != "":
		return nil, fmt.Errorf("%s_file and %s_env: set only one", name, name)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s_file: %w", name, err)
		}
		b = []byte(strings.TrimRight(string(b), "\r\n"))
		if len(b) == 0 {
			return nil, fmt.Errorf("%s_file: %s is empty", name, file)
		}
		return b, nil
	case env != "":
		v := os.Getenv(env)
		if v == "" {
			return nil, fmt.Errorf("%s_env: environment variable %s is not set or empty", name, env)
		}
		return []byte(v), nil
	}
	return nil, nil
}

// tlsConfig builds the client TLS configuration for addr (host:port).
func tlsConfig(o TLSOptions, addr string) (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(addr)
	return o.Config(host)
}
