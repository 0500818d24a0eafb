// Package fluentdtest is an in-process Fluentd forward protocol v1 receiver
// for tests and benchmarks. It decodes with github.com/vmihailenco/msgpack/v5,
// a library independent of the encoder under test, acks chunks, inflates
// CompressedPackedForward (gzip), runs the shared_key handshake (HELO, PING,
// PONG) and can listen on TLS or a unix socket. It can be told to withhold
// acks or to drop connections, to test the client's recovery.
package fluentdtest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Config configures a receiver.
type Config struct {
	// Network is tcp (default) or unix.
	Network string
	// Address to listen on: default 127.0.0.1:0; a socket path for unix.
	Address string
	// TLS, when set, makes the receiver a TLS server.
	TLS *tls.Config
	// SharedKey, when set, requires the shared_key handshake.
	SharedKey string
	// Hostname is the server's self_hostname in the handshake.
	Hostname string
	// Users, when set, also requires a username and password (auth salt in
	// the HELO).
	Users map[string]string
	// DenyKeepalive says keepalive: false in the HELO and closes each
	// connection after its first message, as in_forward's deny_keepalive.
	DenyKeepalive bool
	// Discard counts the entries of PackedForward messages by their "size"
	// option without decoding them, and keeps nothing (benchmarks).
	Discard bool
	// IDsOnly decodes of each record only its auditID and skips the other
	// values: Entry.Record holds that one key. For tests that check which
	// events arrived, not what they hold (end to end, 100,000 events).
	IDsOnly bool
}

// Entry is one received event.
type Entry struct {
	Tag    string
	Time   time.Time
	Record map[string]any // values decoded loosely: int64, uint64, float64, string, []byte, bool, nil, []any, map[string]any
}

// Message is one received forward message.
type Message struct {
	Tag        string
	Mode       string // PackedForward, CompressedPackedForward, Forward or Message
	Chunk      string
	Size       int // the "size" option, -1 when absent
	Compressed string
	Entries    int
}

// Receiver is a forward protocol server.
type Receiver struct {
	cfg Config
	ln  net.Listener

	mu        sync.Mutex
	entries   []Entry
	ids       []string
	messages  []Message
	count     int
	withhold  int  // acks to withhold
	keepWithh bool // keep the entries of a message whose ack is withheld
	drop      int  // connections to close on their next message
	conns     map[net.Conn]bool
	accepted  int
	errs      []error
	wg        sync.WaitGroup
	closed    bool
}

// Start listens and serves until Close.
func Start(cfg Config) (*Receiver, error) {
	if cfg.Network == "" {
		cfg.Network = "tcp"
	}
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:0"
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "receiver.test"
	}
	ln, err := net.Listen(cfg.Network, cfg.Address)
	if err != nil {
		return nil, err
	}
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	r := &Receiver{cfg: cfg, ln: ln, conns: map[net.Conn]bool{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr returns the listening address (host:port, or the socket path).
func (r *Receiver) Addr() string { return r.ln.Addr().String() }

// Close stops listening, closes every connection and waits for them.
func (r *Receiver) Close() {
	r.mu.Lock()
	r.closed = true
	r.ln.Close()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// Entries returns the events received so far, in arrival order.
func (r *Receiver) Entries() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Entry(nil), r.entries...)
}

// AuditIDs returns the auditID of every event received, in arrival order
// ("" for a record without one).
func (r *Receiver) AuditIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

// Count returns how many entries were received.
func (r *Receiver) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// Connections returns how many connections were accepted.
func (r *Receiver) Connections() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepted
}

// Messages returns the messages received so far.
func (r *Receiver) Messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.messages...)
}

// Errors returns the protocol errors the receiver met (a test fails on any).
func (r *Receiver) Errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// Reset forgets what was received and any failure scheduled.
func (r *Receiver) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries, r.ids, r.messages, r.errs = nil, nil, nil, nil
	r.count, r.withhold, r.drop = 0, 0, 0
}

// WithholdAcks makes the receiver not answer the next n messages. With keep
// the entries are kept (as a receiver that stored them and lost the ack),
// else they are discarded too.
func (r *Receiver) WithholdAcks(n int, keep bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.withhold, r.keepWithh = n, keep
}

// DropConnections makes the receiver close the connection, without reading
// it, on each of the next n messages.
func (r *Receiver) DropConnections(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drop = n
}

func (r *Receiver) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func (r *Receiver) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			c.Close()
			return
		}
		r.conns[c] = true
		r.accepted++
		r.wg.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.wg.Done()
			defer func() {
				r.mu.Lock()
				delete(r.conns, c)
				r.mu.Unlock()
				c.Close()
			}()
			if err := r.serve(c); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				r.mu.Lock()
				closed := r.closed
				r.mu.Unlock()
				if !closed {
					r.fail(err)
				}
			}
		}()
	}
}

// errRejected ends a connection whose handshake failed (not a test failure).
var errRejected = errors.New("handshake rejected")

func (r *Receiver) serve(c net.Conn) error {
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			return nil // the client refused us, or we it: not a protocol error
		}
	}
	br := bufio.NewReaderSize(c, 64<<10)
	dec := msgpack.NewDecoder(br)
	dec.UseLooseInterfaceDecoding(true)
	if r.cfg.SharedKey != "" {
		if err := r.handshake(c, dec); err != nil {
			if errors.Is(err, errRejected) {
				return nil
			}
			return err
		}
	}
	for {
		if _, err := br.Peek(1); err != nil {
			return err
		}
		r.mu.Lock()
		drop := r.drop > 0
		if drop {
			r.drop--
		}
		r.mu.Unlock()
		if drop {
			return nil
		}
		if err := r.message(c, dec); err != nil {
			return err
		}
		if r.cfg.DenyKeepalive {
			return nil
		}
	}
}

func (r *Receiver) handshake(c net.Conn, dec *msgpack.Decoder) error {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	var authSalt []byte
	if r.cfg.Users != nil {
		authSalt = make([]byte, 16)
		rand.Read(authSalt)
	}
	helo, err := msgpack.Marshal([]any{"HELO", map[string]any{"nonce": nonce, "auth": authSalt, "keepalive": !r.cfg.DenyKeepalive}})
	if err != nil {
		return err
	}
	if _, err := c.Write(helo); err != nil {
		return err
	}
	// As in_forward, anything but a PING ends the connection.
	var ping []any
	if err := dec.Decode(&ping); err != nil || len(ping) != 6 || str(ping[0]) != "PING" {
		return errRejected
	}
	hostname, salt, digest, user, pwDigest := str(ping[1]), str(ping[2]), str(ping[3]), str(ping[4]), str(ping[5])
	ok, reason := true, ""
	switch {
	case digest != sha512Hex(salt, hostname, string(nonce), r.cfg.SharedKey):
		ok, reason = false, "shared_key mismatch"
	case r.cfg.Users != nil:
		pw, known := r.cfg.Users[user]
		if !known || pwDigest != sha512Hex(string(authSalt), user, pw) {
			ok, reason = false, "username/password mismatch"
		}
	}
	pong, err := msgpack.Marshal([]any{"PONG", ok, reason, r.cfg.Hostname, sha512Hex(salt, r.cfg.Hostname, string(nonce), r.cfg.SharedKey)})
	if err != nil {
		return err
	}
	if _, err := c.Write(pong); err != nil {
		return err
	}
	if !ok {
		return errRejected
	}
	return nil
}

func sha512Hex(parts ...string) string {
	h := sha512.New()
	for _, p := range parts {
		io.WriteString(h, p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func str(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

// message decodes one message in any of the four modes and acks it.
func (r *Receiver) message(c net.Conn, dec *msgpack.Decoder) error {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n < 2 || n > 4 {
		return fmt.Errorf("message is an array of %d items", n)
	}
	tag, err := dec.DecodeString()
	if err != nil {
		return fmt.Errorf("tag: %w", err)
	}
	code, err := dec.PeekCode()
	if err != nil {
		return err
	}
	m := Message{Tag: tag, Size: -1}
	var entries []Entry
	var rest int // items left after the events
	switch {
	case msgpcode.IsBin(code) || msgpcode.IsString(code):
		m.Mode = "PackedForward"
		if r.cfg.Discard { // skip the stream without keeping it
			if err := dec.Skip(); err != nil {
				return fmt.Errorf("event stream: %w", err)
			}
			opts, err := decodeOptions(dec, n-2)
			if err != nil {
				return err
			}
			m.setOptions(opts)
			r.mu.Lock()
			r.count += max(m.Size, 0)
			r.mu.Unlock()
			return r.ack(c, m.Chunk)
		}
		stream, err := dec.DecodeBytes()
		if err != nil {
			return fmt.Errorf("event stream: %w", err)
		}
		rest = n - 2
		opts, err := decodeOptions(dec, rest)
		if err != nil {
			return err
		}
		m.setOptions(opts)
		if m.Compressed == "gzip" {
			m.Mode = "CompressedPackedForward"
			zr, err := gzip.NewReader(bytes.NewReader(stream))
			if err != nil {
				return fmt.Errorf("gzip: %w", err)
			}
			if stream, err = io.ReadAll(zr); err != nil {
				return fmt.Errorf("gzip: %w", err)
			}
		}
		sd := msgpack.NewDecoder(bytes.NewReader(stream))
		sd.UseLooseInterfaceDecoding(true)
		for {
			if _, err := sd.PeekCode(); err == io.EOF {
				break
			}
			e, err := r.decodeEntry(sd, tag)
			if err != nil {
				return fmt.Errorf("entry %d: %w", len(entries), err)
			}
			entries = append(entries, e)
		}
		rest = 0
	case msgpcode.IsFixedArray(code) || code == msgpcode.Array16 || code == msgpcode.Array32:
		m.Mode = "Forward"
		k, err := dec.DecodeArrayLen()
		if err != nil {
			return err
		}
		for range k {
			e, err := r.decodeEntry(dec, tag)
			if err != nil {
				return err
			}
			entries = append(entries, e)
		}
		rest = n - 2
	default:
		m.Mode = "Message"
		t, err := decodeTime(dec)
		if err != nil {
			return err
		}
		var rec map[string]any
		if r.cfg.Discard {
			err = dec.Skip()
		} else {
			rec, err = r.decodeRecord(dec)
		}
		if err != nil {
			return err
		}
		entries = append(entries, Entry{Tag: tag, Time: t, Record: rec})
		rest = n - 3
	}
	if rest > 0 {
		opts, err := decodeOptions(dec, rest)
		if err != nil {
			return err
		}
		m.setOptions(opts)
	}
	m.Entries = len(entries)

	r.mu.Lock()
	withhold := r.withhold > 0
	if withhold {
		r.withhold--
	}
	if !withhold || r.keepWithh {
		r.messages = append(r.messages, m)
		r.count += len(entries)
		if !r.cfg.Discard {
			r.entries = append(r.entries, entries...)
			for _, e := range entries {
				r.ids = append(r.ids, str(e.Record["auditID"]))
			}
		}
	}
	r.mu.Unlock()
	if withhold {
		return nil
	}
	return r.ack(c, m.Chunk)
}

func (r *Receiver) ack(c net.Conn, chunk string) error {
	if chunk == "" {
		return nil
	}
	ack, err := msgpack.Marshal(map[string]string{"ack": chunk})
	if err != nil {
		return err
	}
	_, err = c.Write(ack)
	return err
}

func (m *Message) setOptions(opts map[string]any) {
	if opts == nil {
		return
	}
	m.Chunk = str(opts["chunk"])
	m.Compressed = str(opts["compressed"])
	switch v := opts["size"].(type) {
	case int64:
		m.Size = int(v)
	case uint64:
		m.Size = int(v)
	}
}

func decodeOptions(dec *msgpack.Decoder, n int) (map[string]any, error) {
	if n <= 0 {
		return nil, nil
	}
	v, err := dec.DecodeInterface()
	if err != nil {
		return nil, fmt.Errorf("options: %w", err)
	}
	if v == nil {
		return nil, nil
	}
	opts, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("options are a %T, want a map", v)
	}
	return opts, nil
}

func (r *Receiver) decodeEntry(dec *msgpack.Decoder, tag string) (Entry, error) {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return Entry{}, err
	}
	if n != 2 {
		return Entry{}, fmt.Errorf("entry is an array of %d items, want [time, record]", n)
	}
	t, err := decodeTime(dec)
	if err != nil {
		return Entry{}, err
	}
	if r.cfg.Discard {
		return Entry{Tag: tag, Time: t}, dec.Skip()
	}
	rec, err := r.decodeRecord(dec)
	return Entry{Tag: tag, Time: t, Record: rec}, err
}

// decodeTime reads an EventTime (ext type 0: big-endian uint32 seconds and
// nanoseconds) or an integer of seconds.
func decodeTime(dec *msgpack.Decoder) (time.Time, error) {
	code, err := dec.PeekCode()
	if err != nil {
		return time.Time{}, err
	}
	if !msgpcode.IsExt(code) {
		s, err := dec.DecodeInt64()
		if err != nil {
			return time.Time{}, fmt.Errorf("time: %w", err)
		}
		return time.Unix(s, 0).UTC(), nil
	}
	id, n, err := dec.DecodeExtHeader()
	if err != nil {
		return time.Time{}, fmt.Errorf("time: %w", err)
	}
	if id != 0 || n != 8 {
		return time.Time{}, fmt.Errorf("time: ext type %d of %d bytes, want EventTime (type 0, 8 bytes)", id, n)
	}
	var b [8]byte
	if err := dec.ReadFull(b[:]); err != nil {
		return time.Time{}, fmt.Errorf("time: %w", err)
	}
	return time.Unix(int64(binary.BigEndian.Uint32(b[:4])), int64(binary.BigEndian.Uint32(b[4:]))).UTC(), nil
}

func (r *Receiver) decodeRecord(dec *msgpack.Decoder) (map[string]any, error) {
	if r.cfg.IDsOnly {
		return decodeAuditID(dec)
	}
	v, err := dec.DecodeInterface()
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	rec, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("record is a %T, want a map", v)
	}
	return rec, nil
}

// decodeAuditID reads a record, a map, keeping only its auditID.
func decodeAuditID(dec *msgpack.Decoder) (map[string]any, error) {
	n, err := dec.DecodeMapLen()
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	if n < 0 {
		return nil, errors.New("record is nil, want a map")
	}
	rec := make(map[string]any, 1)
	for range n {
		k, err := dec.DecodeString()
		if err != nil {
			return nil, fmt.Errorf("record key: %w", err)
		}
		if k != "auditID" {
			if err := dec.Skip(); err != nil {
				return nil, fmt.Errorf("record value %q: %w", k, err)
			}
			continue
		}
		if rec[k], err = dec.DecodeInterface(); err != nil {
			return nil, fmt.Errorf("record value %q: %w", k, err)
		}
	}
	return rec, nil
}
