package kafka

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/audittail/audittail/outputs"
)

// Defaults of the kafka output's keys.
const (
	DefaultPort = "9092"
	DefaultKey  = "auditID"
	// DefaultMaxMessageBytes is under a stock broker's message.max.bytes
	// (1048588) and the topic default max.message.bytes.
	DefaultMaxMessageBytes = 1 << 20
	DefaultTimeout         = 30 * time.Second
	DefaultCompression     = "zstd"

	minMaxMessageBytes = 4 << 10
	maxMaxMessageBytes = 1 << 30 // franz-go's ceiling for a record batch
)

// Options are the `kafka` output's keys.
type Options struct {
	// Brokers are the seed brokers, host:port (port 9092 if none); the
	// others are learnt from the cluster's metadata (required).
	Brokers []string `yaml:"brokers"`
	// Topic receives every event; it must exist: audittail does not create
	// topics (required).
	Topic string `yaml:"topic"`
	// Key is the record key, which chooses the partition: auditID (default:
	// both stages of a request in one partition, in order), namespace, user,
	// or none (no key: batches spread over the partitions).
	Key string `yaml:"key"`
	// Acks is all (default: the leader waits for the in-sync replicas;
	// idempotent producer) or leader (the leader alone; idempotency off).
	Acks string `yaml:"acks"`
	// Compression of record batches: zstd (default), lz4, snappy, gzip or
	// none.
	Compression string `yaml:"compression"`
	// TLS, when given (even empty: `tls: {}`), encrypts the connections to
	// the brokers.
	TLS *TLSOptions `yaml:"tls"`
	// SASL authenticates to the brokers.
	SASL SASLOptions `yaml:"sasl"`
	// MaxMessageBytes bounds one record batch, and so one record (default
	// 1MiB); keep it at most the topic's max.message.bytes. A longer event
	// is sent without its responseObject (then requestObject), or
	// dead-lettered if still too long.
	MaxMessageBytes outputs.ByteSize `yaml:"max_message_bytes"`
	// Timeout bounds one Send: every record of the batch acknowledged
	// (default 30s).
	Timeout time.Duration `yaml:"timeout"`
}

// SASLOptions are the keys under `sasl:`.
type SASLOptions struct {
	// Mechanism is plain, scram-sha-256 or scram-sha-512.
	Mechanism string `yaml:"mechanism"`
	// Username is the SASL user.
	Username string `yaml:"username"`
	// PasswordFile holds the password (trailing newlines ignored). There is
	// no key for a literal password.
	PasswordFile string `yaml:"password_file"`
}

// TLSOptions are the keys under `tls:`, as for every network output.
type TLSOptions = outputs.TLSOptions

// keyKind says what the record key is.
type keyKind int

const (
	keyAuditID keyKind = iota
	keyNamespace
	keyUser
	keyNone
)

// settings are validated Options.
type settings struct {
	brokers  []string
	display  string // the brokers, comma-separated, for messages
	topic    string
	key      keyKind
	acksAll  bool
	codec    kgo.CompressionCodec
	tls      *tls.Config
	sasl     sasl.Mechanism
	saslUser string
	maxMsg   int
	timeout  time.Duration
}

// validate checks o, fills in the defaults and reads the password and TLS
// files. Every error names the key.
func (o Options) validate() (*settings, error) {
	s := &settings{topic: o.Topic, timeout: o.Timeout}
	if len(o.Brokers) == 0 {
		return nil, errors.New("brokers: required (a list of host:port)")
	}
	for i, b := range o.Brokers {
		b = strings.TrimSpace(b)
		if b == "" || strings.Contains(b, "://") {
			return nil, fmt.Errorf("brokers[%d]: %q is not host:port", i, o.Brokers[i])
		}
		host, port, err := net.SplitHostPort(b)
		if err != nil {
			if strings.Count(b, ":") == 1 {
				return nil, fmt.Errorf("brokers[%d]: %q: %v", i, b, err)
			}
			host, port = strings.Trim(b, "[]"), DefaultPort
		}
		if host == "" {
			return nil, fmt.Errorf("brokers[%d]: %q: missing host", i, b)
		}
		s.brokers = append(s.brokers, net.JoinHostPort(host, port))
	}
	s.display = strings.Join(s.brokers, ",")

	if s.topic == "" {
		return nil, errors.New("topic: required")
	}
	if err := validTopic(s.topic); err != nil {
		return nil, fmt.Errorf("topic: %q: %v", s.topic, err)
	}
	switch o.Key {
	case "", "auditID":
		s.key = keyAuditID
	case "namespace":
		s.key = keyNamespace
	case "user":
		s.key = keyUser
	case "none":
		s.key = keyNone
	default:
		return nil, fmt.Errorf("key: unknown value %q (want auditID, namespace, user or none)", o.Key)
	}
	switch o.Acks {
	case "", "all":
		s.acksAll = true
	case "leader":
	default:
		return nil, fmt.Errorf("acks: unknown value %q (want all or leader)", o.Acks)
	}
	switch o.Compression {
	case "", "zstd":
		s.codec = kgo.ZstdCompression().WithLevel(int(zstd.SpeedFastest))
	case "lz4":
		s.codec = kgo.Lz4Compression()
	case "snappy":
		s.codec = kgo.SnappyCompression()
	case "gzip":
		s.codec = kgo.GzipCompression()
	case "none":
		s.codec = kgo.NoCompression()
	default:
		return nil, fmt.Errorf("compression: unknown value %q (want zstd, lz4, snappy, gzip or none)", o.Compression)
	}
	switch {
	case o.MaxMessageBytes < 0:
		return nil, errors.New("max_message_bytes: must not be negative")
	case o.MaxMessageBytes == 0:
		s.maxMsg = DefaultMaxMessageBytes
	case o.MaxMessageBytes < minMaxMessageBytes:
		return nil, fmt.Errorf("max_message_bytes: %d is too small (at least 4KiB)", o.MaxMessageBytes)
	case o.MaxMessageBytes > maxMaxMessageBytes:
		return nil, fmt.Errorf("max_message_bytes: %d is too large (at most 1GiB)", o.MaxMessageBytes)
	default:
		s.maxMsg = int(o.MaxMessageBytes)
	}
	switch {
	case s.timeout < 0:
		return nil, fmt.Errorf("timeout: must not be negative, got %s", s.timeout)
	case s.timeout == 0:
		s.timeout = DefaultTimeout
	}

	if err := o.SASL.mechanism(s); err != nil {
		return nil, err
	}
	if o.TLS != nil {
		host, _, _ := net.SplitHostPort(s.brokers[0])
		c, err := o.TLS.Config(host)
		if err != nil {
			return nil, err
		}
		if o.TLS.ServerName == "" {
			// franz-go sets each broker's own host when ServerName is empty.
			c.ServerName = ""
		}
		s.tls = c
	}
	return s, nil
}

// mechanism validates the sasl keys, reads the password and sets s.sasl.
func (o SASLOptions) mechanism(s *settings) error {
	if o == (SASLOptions{}) {
		return nil
	}
	if o.Mechanism == "" {
		return errors.New("sasl.mechanism: required with sasl (plain, scram-sha-256 or scram-sha-512)")
	}
	if o.Username == "" {
		return errors.New("sasl.username: required with sasl")
	}
	if o.PasswordFile == "" {
		return errors.New("sasl.password_file: required with sasl (the password is read from a file only)")
	}
	b, err := os.ReadFile(o.PasswordFile)
	if err != nil {
		return fmt.Errorf("sasl.password_file: %w", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return fmt.Errorf("sasl.password_file: %s is empty", o.PasswordFile)
	}
	switch o.Mechanism {
	case "plain":
		s.sasl = plain.Auth{User: o.Username, Pass: pw}.AsMechanism()
	case "scram-sha-256":
		s.sasl = scram.Auth{User: o.Username, Pass: pw}.AsSha256Mechanism()
	case "scram-sha-512":
		s.sasl = scram.Auth{User: o.Username, Pass: pw}.AsSha512Mechanism()
	default:
		return fmt.Errorf("sasl.mechanism: unknown value %q (want plain, scram-sha-256 or scram-sha-512)", o.Mechanism)
	}
	s.saslUser = o.Username
	return nil
}

// validTopic applies Kafka's rule for topic names.
func validTopic(t string) error {
	if t == "." || t == ".." {
		return errors.New("not a valid topic name")
	}
	if len(t) > 249 {
		return errors.New("longer than 249 characters")
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("character %q not allowed (want ASCII letters, digits, '.', '_' and '-')", c)
		}
	}
	return nil
}
