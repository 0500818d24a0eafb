package syslog

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/audittail/audittail/outputs"
)

// Options are the `syslog` output's keys.
//
//	outputs:
//	  - name: siem
//	    type: syslog
//	    address: tls://siem.example.com:6514
//	    tls: {ca_file: /etc/audittail/siem-ca.pem}
//	    facility: authpriv
type Options struct {
	// Address is tcp://host:port (RFC 6587), tls://host:port (RFC 5425),
	// udp://host:port (RFC 5426, one message per datagram), or
	// relp://host:port and relp+tls://host:port (RELP, rsyslog's
	// acknowledged protocol: imrelp). Required.
	Address string `yaml:"address"`
	// RELPWindow is how many RELP messages may await their "rsp 200" at
	// once. Default 128 (librelp's). Only with relp:// and relp+tls://.
	RELPWindow int `yaml:"relp_window"`
	// Format is rfc5424 (default) or rfc3164 (BSD syslog: no structured
	// data, no year or time zone in the timestamp).
	Format string `yaml:"format"`
	// Framing of messages on a TCP or TLS stream: octet-counting (default,
	// RFC 6587 3.4.1; the only framing RFC 5425 allows) or non-transparent
	// (each message ends with LF, RFC 6587 3.4.2). Not used with udp.
	Framing string `yaml:"framing"`
	// Facility is a name (kern, user, mail, daemon, auth or security,
	// syslog, lpr, news, uucp, cron, authpriv, ftp, ntp, audit, alert,
	// clock, local0 ... local7) or a number 0-23. Default authpriv: audit
	// events are security records that can hold user names and request
	// bodies, and receivers keep authpriv out of world-readable logs.
	Facility string `yaml:"facility"`
	// Hostname is the HOSTNAME field. Default: $NODE_NAME (set it from the
	// downward API in the DaemonSet), else the host's name.
	Hostname string `yaml:"hostname"`
	// AppName is the APP-NAME (RFC 3164: TAG) field. Default kube-apiserver.
	AppName string `yaml:"app_name"`
	// SDID is the SD-ID of the structured data element. Default
	// audit@32473 (32473 is the documentation enterprise number of
	// RFC 5612: use your own PEN in production if your SIEM cares).
	SDID string `yaml:"sd_id"`
	// MaxMessageBytes bounds one syslog message (header, structured data
	// and MSG; not the octet count or LF that frames it). A larger event is
	// sent without its requestObject and responseObject; if it is still
	// larger, it is rejected (dead-lettered). Default 8000 bytes on every
	// transport: under the 8096 bytes a stock rsyslog takes (it cuts a
	// longer message, which breaks the JSON and turns the rest into bogus
	// messages), at most 6 Ethernet fragments over udp, and above the 2048
	// bytes RFC 5426 says receivers should take, so that Metadata-level
	// events (1-2KiB) pass whole. To send large events whole, raise the
	// receiver's limits first (rsyslog: global(maxMessageSize="256k") before
	// the modules are loaded, and imtcp's maxFrameSize="262144" for octet
	// counting, which otherwise cuts frames at 200,000 bytes), then this.
	MaxMessageBytes ByteSize `yaml:"max_message_bytes"`
	// TLS configures tls:// addresses: tls.ca_file, tls.cert_file,
	// tls.key_file, tls.server_name, tls.insecure_skip_verify. The server's
	// certificate is verified by default.
	TLS TLSOptions `yaml:"tls"`
	// DialTimeout bounds a connection attempt, TLS handshake included.
	// Default 10s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// WriteTimeout bounds the writing of one batch. Default 30s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
}

// Defaults.
const (
	DefaultFacility        = "authpriv"
	DefaultAppName         = "kube-apiserver"
	DefaultSDID            = "audit@32473"
	DefaultMaxStreamBytes  = 8000
	DefaultMaxDatagramSize = 8000
	DefaultDialTimeout     = 10 * time.Second
	DefaultWriteTimeout    = 30 * time.Second

	// maxUDPPayload is the largest UDP payload over IPv4.
	maxUDPPayload = 65507
	// minMessageBytes is the size every receiver must accept (RFC 5426 3.2).
	minMessageBytes = 480
)

// Formats and framings.
const (
	FormatRFC5424 = "rfc5424"
	FormatRFC3164 = "rfc3164"

	FramingOctetCounting  = "octet-counting"
	FramingNonTransparent = "non-transparent"
)

// ByteSize is a size in bytes, as everywhere in the configuration.
type ByteSize = outputs.ByteSize

// facilities maps the names rsyslog and syslog(3) use to their codes.
var facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "security": 4,
	"syslog": 5, "lpr": 6, "news": 7, "uucp": 8, "cron": 9, "authpriv": 10,
	"ftp": 11, "ntp": 12, "audit": 13, "alert": 14, "clock": 15,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19,
	"local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// config is Options checked and completed.
type config struct {
	address      string // as configured, for messages
	network      string // tcp or udp
	hostport     string
	tls          *tls.Config
	rfc3164      bool
	octetCount   bool
	facility     int
	hostname     string
	appName      string
	sdID         string
	maxMsg       int
	dialTimeout  time.Duration
	writeTimeout time.Duration
	relp         bool // RELP over network tcp (and tls when set)
	relpWindow   int
}

// DefaultRELPWindow is librelp's window of unacknowledged messages.
const DefaultRELPWindow = 128

func (o Options) check() (*config, error) {
	c := &config{address: o.Address}
	if o.Address == "" {
		return nil, errors.New("address: required (tcp://host:port, tls://host:port, udp://host:port, relp://host:port or relp+tls://host:port)")
	}
	u, err := url.Parse(o.Address)
	if err != nil || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("address: invalid value %q (want tcp://host:port, tls://host:port, udp://host:port, relp://host:port or relp+tls://host:port)", o.Address)
	}
	c.hostport = u.Host
	scheme := u.Scheme
	switch scheme {
	case "tcp", "tls":
		c.network = "tcp"
	case "udp":
		c.network = "udp"
	case "relp", "relp+tls":
		c.network, c.relp = "tcp", true
	default:
		return nil, fmt.Errorf("address: invalid scheme %q in %q (want tcp, tls, udp, relp or relp+tls)", scheme, o.Address)
	}
	switch {
	case c.relp && o.RELPWindow == 0:
		c.relpWindow = DefaultRELPWindow
	case c.relp && (o.RELPWindow < 1 || o.RELPWindow > 100000):
		return nil, fmt.Errorf("relp_window: %d out of range (want 1 to 100000)", o.RELPWindow)
	case c.relp:
		c.relpWindow = o.RELPWindow
	case o.RELPWindow != 0:
		return nil, fmt.Errorf("relp_window: only used with relp:// and relp+tls:// addresses, not %s", o.Address)
	}
	if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
		return nil, fmt.Errorf("address: invalid port in %q", o.Address)
	}

	switch o.Format {
	case "", FormatRFC5424:
	case FormatRFC3164:
		c.rfc3164 = true
	default:
		return nil, fmt.Errorf("format: invalid value %q (want rfc5424 or rfc3164)", o.Format)
	}

	switch o.Framing {
	case "", FramingOctetCounting:
		c.octetCount = true
	case FramingNonTransparent:
		if c.relp {
			return nil, errors.New("framing: not used with RELP (it frames messages itself)")
		}
		if scheme == "tls" {
			return nil, fmt.Errorf("framing: %s is not allowed with tls:// (RFC 5425 requires octet-counting)", o.Framing)
		}
	default:
		return nil, fmt.Errorf("framing: invalid value %q (want octet-counting or non-transparent)", o.Framing)
	}
	if scheme == "udp" && o.Framing != "" {
		return nil, errors.New("framing: not used with udp:// (one message per datagram)")
	}

	fac := o.Facility
	if fac == "" {
		fac = DefaultFacility
	}
	if n, err := strconv.Atoi(fac); err == nil {
		if n < 0 || n > 23 {
			return nil, fmt.Errorf("facility: %d is out of range (want 0-23)", n)
		}
		c.facility = n
	} else if n, ok := facilities[strings.ToLower(fac)]; ok {
		c.facility = n
	} else {
		return nil, fmt.Errorf("facility: invalid value %q (want a name such as authpriv, security, local0, or a number 0-23)", o.Facility)
	}

	c.hostname = o.Hostname
	if c.hostname != "" {
		if !printUSASCII(c.hostname, 255) {
			return nil, fmt.Errorf("hostname: invalid value %q (want 1 to 255 printable ASCII characters, no spaces)", o.Hostname)
		}
	} else {
		c.hostname = defaultHostname()
	}

	c.appName = o.AppName
	if c.appName == "" {
		c.appName = DefaultAppName
	}
	if !printUSASCII(c.appName, 48) || (c.rfc3164 && strings.ContainsAny(c.appName, ":[]")) {
		return nil, fmt.Errorf("app_name: invalid value %q (want 1 to 48 printable ASCII characters, no spaces, and for rfc3164 no ':', '[' or ']')", o.AppName)
	}

	c.sdID = o.SDID
	if c.sdID == "" {
		c.sdID = DefaultSDID
	}
	if err := checkSDID(c.sdID); err != nil {
		return nil, fmt.Errorf("sd_id: invalid value %q (%v)", c.sdID, err)
	}
	if c.rfc3164 && o.SDID != "" {
		return nil, errors.New("sd_id: not used with rfc3164 (it has no structured data)")
	}

	c.maxMsg = int(o.MaxMessageBytes)
	switch {
	case c.maxMsg == 0 && c.network == "udp":
		c.maxMsg = DefaultMaxDatagramSize
	case c.maxMsg == 0:
		c.maxMsg = DefaultMaxStreamBytes
	case c.maxMsg < minMessageBytes:
		return nil, fmt.Errorf("max_message_bytes: %d is too small (at least %d)", c.maxMsg, minMessageBytes)
	case c.network == "udp" && c.maxMsg > maxUDPPayload:
		return nil, fmt.Errorf("max_message_bytes: %d does not fit in a UDP datagram (at most %d)", c.maxMsg, maxUDPPayload)
	}

	c.dialTimeout, c.writeTimeout = o.DialTimeout, o.WriteTimeout
	if c.dialTimeout < 0 || c.writeTimeout < 0 {
		return nil, errors.New("dial_timeout and write_timeout: must not be negative")
	}
	if c.dialTimeout == 0 {
		c.dialTimeout = DefaultDialTimeout
	}
	if c.writeTimeout == 0 {
		c.writeTimeout = DefaultWriteTimeout
	}

	if c.relp && o.Framing != "" {
		return nil, errors.New("framing: not used with RELP (it frames messages itself)")
	}
	if scheme != "tls" && scheme != "relp+tls" {
		if o.TLS.IsSet() {
			return nil, fmt.Errorf("tls: only used with tls:// and relp+tls:// addresses, not %s", o.Address)
		}
		return c, nil
	}
	c.tls, err = o.TLS.Config(u.Hostname())
	if err != nil {
		return nil, err
	}
	return c, nil
}

// TLSOptions are the keys under `tls:`, as for every network output.
type TLSOptions = outputs.TLSOptions

// printUSASCII reports whether s is 1 to max characters between '!' and '~'.
func printUSASCII(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

// checkSDID checks an SD-ID that is not IANA-registered: name@PEN, at most
// 32 printable characters without '=', ' ', ']' or '"' (RFC 5424 6.3.2).
func checkSDID(id string) error {
	if !printUSASCII(id, 32) || strings.ContainsAny(id, `= ]"`) {
		return errors.New(`want at most 32 printable ASCII characters without '=', ']', '"' or spaces`)
	}
	name, pen, ok := strings.Cut(id, "@")
	if !ok || name == "" || pen == "" || strings.Contains(pen, "@") {
		return errors.New("want name@<private enterprise number>, such as audit@32473")
	}
	for _, part := range strings.Split(pen, ".") {
		if _, err := strconv.ParseUint(part, 10, 32); err != nil {
			return errors.New("want name@<private enterprise number>, such as audit@32473")
		}
	}
	return nil
}

// defaultHostname is $NODE_NAME, else the host's name, made a valid
// HOSTNAME field.
func defaultHostname() string {
	h := os.Getenv("NODE_NAME")
	if h == "" {
		h, _ = os.Hostname()
	}
	b := []byte(h)
	for i, c := range b {
		if c < '!' || c > '~' {
			b[i] = '-'
		}
	}
	if len(b) > 255 {
		b = b[:255]
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}
