// Package kafka implements the `kafka` output: every event one record in a
// Kafka topic, produced with franz-go (github.com/twmb/franz-go/pkg/kgo),
// idempotently unless `acks: leader`.
//
// A record's value is the event line exactly as read; its headers are
// auditID, stage and verb (left out for a line that is not a valid audit
// event); its key is the auditID (default), the namespace, the user or
// nothing, and chooses the partition (franz-go's default partitioner, which
// hashes keys as the Java client does: every record of one key lands in
// one partition, in order).
//
// Send returns nil only when the promise of every record of the batch
// reported success (acks: all: written by the leader and the in-sync
// replicas). Any failure leaves the whole batch unacknowledged and the
// agent sends it again; a partial success is not interpreted. Send is
// bounded by the timeout key and by its context, so a dead cluster makes it
// return an error rather than hang.
//
// Order within a partition: franz-go retries a record until it is written
// or fails it for good, and when it fails one it fails every record
// buffered behind it in that partition, but not records already in a
// request, which may still be written. A record failed early (a timeout)
// while a later one of the same batch lands would put the later one first
// in the log, and the resend behind it. So no record is ever given a
// deadline: records are retried for as long as the output lives (they fail
// only on errors franz-go does not retry, such as a missing topic), a Send
// that times out leaves its records to franz-go, and the next Send first
// waits (within its own timeout) until all of them are resolved before it
// produces anything. Each partition therefore receives the events in the
// order sent; a resent batch may repeat events (at least once), never put
// a later event before an earlier one's first copy. At most one batch's
// records are buffered at a time.
//
// Errors that blame the configuration rather than the events (the topic
// does not exist, authorization or SASL failed, the broker refuses record
// batches of max_message_bytes) are retried after a minute
// (outputs.RetryAfterError) with a message naming the topic and brokers; no
// event is dead-lettered for them. An event longer than max_message_bytes
// is sent without its responseObject (then requestObject), annotated
// audittail.io/truncated, and dead-lettered (outputs.RejectedError) if
// still too long.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/parser"
)

// configRetry is how long the agent waits before retrying after an error
// that blames the configuration (missing topic, authorization).
const configRetry = time.Minute

// recordOverhead bounds what a record adds to its value and key in a
// record batch (the batch header, the record's varints, the headers'
// lengths), with room for franz-go's overestimates of request versions.
const recordOverhead = 256

// maxBuffered is franz-go's limit of buffered records, above any batch
// (batch.max_events): Produce blocks at the limit.
const maxBuffered = 1 << 20

// Output produces batches to one Kafka topic.
type Output struct {
	s   *settings
	log *slog.Logger
	cl  *kgo.Client

	mu       sync.Mutex // held for a whole Send
	closed   bool
	inflight *flight // an earlier Send's records, not all resolved when it returned

	ctx    context.Context // the records' context: cancelled by Close
	cancel context.CancelFunc

	own       *records // built by Send for a batch not prepared
	truncated atomic.Int64
	lastErr   *atomic.Pointer[loggedErr] // franz-go's last logged error (connections, SASL)
}

// loggedErr is an error franz-go logged, and when.
type loggedErr struct {
	err error
	at  time.Time
}

var (
	_ outputs.Output  = (*Output)(nil)
	_ outputs.Checker = (*Output)(nil)
)

// FromConfig decodes the kafka output's keys and returns the output.
func FromConfig(c outputs.Config, log *slog.Logger) (*Output, error) {
	var o Options
	if err := c.DecodeOptions(&o); err != nil {
		return nil, err
	}
	return New(o, log)
}

// New validates o, reads the password and TLS files it names, and returns
// the output. It does not connect: the first Send (or Check) does.
func New(o Options, log *slog.Logger) (*Output, error) {
	s, err := o.validate()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("kafka", s.display, "topic", s.topic)
	if s.tls != nil && s.tls.InsecureSkipVerify {
		log.Warn("TLS CERTIFICATE VERIFICATION IS OFF (tls.insecure_skip_verify): anyone on the path can read and change the audit events; use it only in tests")
	}
	if s.sasl != nil && s.tls == nil {
		log.Warn("SASL without tls: the credentials (in clear text with plain) and the audit events travel unencrypted")
	}
	lastErr := new(atomic.Pointer[loggedErr])
	opts := []kgo.Opt{
		kgo.SeedBrokers(s.brokers...),
		kgo.DefaultProduceTopic(s.topic),
		kgo.ProducerBatchCompression(s.codec),
		kgo.ProducerBatchMaxBytes(int32(s.maxMsg)),
		kgo.ProducerLinger(0),               // Send waits for its records: lingering only adds latency
		kgo.MaxBufferedRecords(maxBuffered), // never reached: one batch at a time
		kgo.WithLogger(kgoLogger{log, lastErr}),
	}
	if s.acksAll {
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	} else {
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	}
	if s.tls != nil {
		opts = append(opts, kgo.DialTLSConfig(s.tls))
	}
	if s.sasl != nil {
		opts = append(opts, kgo.SASL(s.sasl))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client for %s: %w", s.display, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Output{s: s, log: log, cl: cl, ctx: ctx, cancel: cancel, lastErr: lastErr}, nil
}

// Truncated returns how many events were sent with their objects cut out
// because they were longer than max_message_bytes allows.
func (o *Output) Truncated() int64 { return o.truncated.Load() }

// flight counts the promises of one Send.
type flight struct {
	mu      sync.Mutex
	pending int
	failed  int
	err     error // the first failure
	done    chan struct{}
}

func (f *flight) promise(_ *kgo.Record, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.failed++
		if f.err == nil {
			f.err = err
		}
	}
	f.pending--
	if f.pending == 0 {
		close(f.done)
	}
}

// Send produces one record per line of b and waits, at most the timeout,
// until every one is acknowledged. See the package documentation.
func (o *Output) Send(ctx context.Context, b *outputs.Batch) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return outputs.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	n := b.Len()
	if n == 0 {
		return nil
	}
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, o.s.timeout)
	defer cancel()
	if f := o.inflight; f != nil {
		// Producing behind an earlier attempt's records is what keeps
		// the order; producing while some may still fail is not.
		select {
		case <-f.done:
			o.inflight = nil
		case <-pctx.Done():
			if err := ctx.Err(); err != nil {
				return err
			}
			f.mu.Lock()
			left := f.pending
			f.mu.Unlock()
			return fmt.Errorf("kafka %s: %d records of an earlier attempt to topic %s still not acknowledged after another %s", o.s.display, left, o.s.topic, o.s.timeout)
		}
	}

	// Prepared records are produced once: a retry builds them again, as
	// franz-go has set fields of theirs (timestamp, partition) meanwhile.
	var r *records
	if v, ok := b.Prepared(); ok {
		if p, _ := v.(*records); p != nil && p.out == o && !p.produced {
			r = p
		}
	}
	if r == nil {
		if o.own == nil || o.own.held {
			o.own = &records{out: o}
		}
		r = o.own
		o.build(r, b)
	}
	r.produced = true
	o.truncated.Add(int64(r.cut))
	produce := r.produce
	var rejected error
	if len(r.rejected) > 0 {
		rejected = &outputs.RejectedError{
			Lines: slices.Clone(r.rejected),
			Err:   fmt.Errorf("event longer than max_message_bytes (%d) even without requestObject and responseObject, not sent to topic %s", o.s.maxMsg, o.s.topic),
		}
		if len(produce) == 0 {
			return rejected
		}
	}

	f := &flight{pending: len(produce), done: make(chan struct{})}
	for _, rec := range produce {
		o.cl.Produce(o.ctx, rec, f.promise)
	}
	select {
	case <-f.done:
	case <-pctx.Done():
		o.inflight = f
		r.held = true
		if err := ctx.Err(); err != nil {
			return err
		}
		f.mu.Lock()
		left, failed, first := f.pending, f.failed, f.err
		f.mu.Unlock()
		err := fmt.Errorf("kafka %s: %d of %d records to topic %s not acknowledged within timeout %s", o.s.display, left, len(produce), o.s.topic, o.s.timeout)
		if first != nil {
			return o.classify(fmt.Errorf("%w (%d failed: %w)", err, failed, o.explain(first)), first)
		}
		if l := o.lastErr.Load(); l != nil && !l.at.Before(start) {
			// franz-go retries connections and SASL without failing
			// the records: say why they are stuck.
			return o.classify(fmt.Errorf("%w (last error: %w)", err, o.explain(l.err)), l.err)
		}
		return err
	}
	if f.err != nil {
		return o.classify(fmt.Errorf("kafka %s: %d of %d records to topic %s failed: %w", o.s.display, f.failed, len(produce), o.s.topic, o.explain(f.err)), f.err)
	}
	return rejected
}

// records are a batch's kgo.Records and the bytes they point into, built
// by Prepare (while the batch before is in flight) or by Send.
type records struct {
	out      *Output
	recs     []kgo.Record
	hdrs     []kgo.RecordHeader
	arena    []byte
	produce  []*kgo.Record // the records to produce, in order
	rejected []int         // lines over max_message_bytes, even cut
	cut      int           // lines sent with their objects cut out
	produced bool          // by a Send
	// held: a Send returned before every promise did, so franz-go may
	// still read them; they are never reused.
	held bool
}

var _ outputs.Preparer = (*Output)(nil)

// Prepare builds b's records, so that Send only produces them.
func (o *Output) Prepare(b *outputs.Batch) {
	v, _ := b.Prepared()
	r, _ := v.(*records)
	if r == nil || r.out != o || r.held {
		r = &records{out: o}
	}
	o.build(r, b)
	b.SetPrepared(r)
}

// build makes r the records of b, reusing r's buffers. The records and
// their bytes are r's own: franz-go may hold them after Send returns (a
// timeout with requests in flight), when the batch belongs to the caller
// again.
func (o *Output) build(r *records, b *outputs.Batch) {
	n := b.Len()
	recs := slices.Grow(r.recs[:0], n)[:n]
	clear(recs)
	hdrs := slices.Grow(r.hdrs[:0], 3*n)
	arena := slices.Grow(r.arena[:0], b.Size()+n*64)
	produce := slices.Grow(r.produce[:0], n)
	rejected := r.rejected[:0]
	cut := 0
	for i := range n {
		line, ev := b.Line(i), b.Event(i)
		rec := &recs[i]
		start := len(arena)
		hstart := len(hdrs)
		if ev != nil {
			for _, h := range [...]struct {
				k string
				v []byte
			}{{"auditID", ev.AuditID}, {"stage", ev.Stage}, {"verb", ev.Verb}} {
				vs := len(arena)
				arena = appendString(arena, h.v)
				hdrs = append(hdrs, kgo.RecordHeader{Key: h.k, Value: arena[vs:len(arena):len(arena)]})
			}
			rec.Headers = hdrs[hstart:len(hdrs):len(hdrs)]
			var kv []byte
			switch o.s.key {
			case keyAuditID:
				kv = ev.AuditID
			case keyNamespace:
				kv = ev.ObjectRef.Namespace
			case keyUser:
				kv = ev.Username
			}
			if kv != nil {
				ks := len(arena)
				arena = appendString(arena, kv)
				if len(arena) > ks {
					rec.Key = arena[ks:len(arena):len(arena)]
				}
			}
		}
		limit := o.s.maxMsg - recordOverhead - (len(arena) - start) - 16*len(rec.Headers)
		vs := len(arena)
		if len(line) <= limit {
			arena = append(arena, line...)
		} else {
			var ok bool
			if ev != nil {
				arena, ok = outputs.CutObjects(arena, line, ev, limit)
			}
			if !ok || len(arena)-vs > limit {
				arena = arena[:start]
				hdrs = hdrs[:hstart]
				rejected = append(rejected, i)
				continue
			}
			cut++
		}
		rec.Value = arena[vs:len(arena):len(arena)]
		produce = append(produce, rec)
	}
	r.recs, r.hdrs, r.arena, r.produce, r.rejected = recs, hdrs, arena, produce, rejected
	r.cut, r.produced = cut, false
}

// explain adds what to check to the errors that blame the configuration.
func (o *Output) explain(err error) error {
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		return fmt.Errorf("topic %s does not exist on brokers %s (audittail does not create topics): %w", o.s.topic, o.s.display, err)
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return fmt.Errorf("not authorized to write to topic %s on brokers %s (check the ACLs%s): %w", o.s.topic, o.s.display, o.forUser(), err)
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		return fmt.Errorf("brokers %s refused the cluster permission the idempotent producer needs (grant IDEMPOTENT_WRITE on the cluster%s, or set acks: leader): %w", o.s.display, o.forUser(), err)
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.IllegalSaslState), errors.Is(err, kerr.UnsupportedSaslMechanism):
		return fmt.Errorf("SASL authentication to brokers %s failed (check sasl.mechanism, sasl.username and sasl.password_file): %w", o.s.display, err)
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		return fmt.Errorf("brokers %s refused a record batch for topic %s as too large: set max_message_bytes (%d) to at most the topic's max.message.bytes: %w", o.s.display, o.s.topic, o.s.maxMsg, err)
	}
	return err
}

func (o *Output) forUser() string {
	if o.s.saslUser == "" {
		return ""
	}
	return " of User:" + o.s.saslUser
}

// classify makes err, whose cause is cause, a RetryAfterError when the
// cause blames the configuration.
func (o *Output) classify(err, cause error) error {
	for _, e := range []error{
		kerr.UnknownTopicOrPartition, kerr.UnknownTopicID, kerr.TopicAuthorizationFailed,
		kerr.ClusterAuthorizationFailed, kerr.SaslAuthenticationFailed, kerr.IllegalSaslState,
		kerr.UnsupportedSaslMechanism, kerr.MessageTooLarge, kerr.RecordListTooLarge,
	} {
		if errors.Is(cause, e) {
			return &outputs.RetryAfterError{After: configRetry, Err: err}
		}
	}
	return err
}

// appendString appends the decoded JSON string raw (a string's bytes
// between its quotes, as parser.Scan returns them); nothing if it does
// not decode.
func appendString(dst, raw []byte) []byte {
	if len(raw) == 0 {
		return dst
	}
	out, err := parser.Unquote(dst, raw)
	if err != nil {
		return dst
	}
	return out
}

// Check asks the brokers for the topic's metadata: it fails when no broker
// answers, SASL or TLS fails, the topic does not exist or may not be
// described.
func (o *Output) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, o.s.timeout)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(o.s.topic)
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, o.cl)
	if err != nil {
		return fmt.Errorf("cannot reach brokers %s: %w", o.s.display, o.explain(err))
	}
	for _, rt := range resp.Topics {
		if rt.Topic == nil || *rt.Topic != o.s.topic {
			continue
		}
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
			return o.explain(err)
		}
		if len(rt.Partitions) == 0 {
			return fmt.Errorf("topic %s on brokers %s has no partitions", o.s.topic, o.s.display)
		}
		return nil
	}
	return fmt.Errorf("brokers %s did not describe topic %s", o.s.display, o.s.topic)
}

// Close fails what franz-go still buffers (nothing after a nil Send) and
// closes the connections, waiting at most until ctx is done. Send after
// Close returns outputs.ErrClosed.
func (o *Output) Close(ctx context.Context) error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	o.mu.Unlock()
	o.cancel()
	done := make(chan struct{})
	go func() {
		o.cl.Close()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("closing the kafka client for %s: %w", o.s.display, ctx.Err())
	}
}

// kgoLogger passes franz-go's warnings and errors to the output's logger
// and keeps the last error it logged.
type kgoLogger struct {
	log  *slog.Logger
	last *atomic.Pointer[loggedErr]
}

// Level is info so that the errors franz-go logs there (a metadata load
// failing) are kept for Send's timeout message; only warnings and errors
// are passed on.
func (kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelInfo }

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	for i := 0; i+1 < len(keyvals); i += 2 {
		if err, ok := keyvals[i+1].(error); ok && keyvals[i] == "err" {
			l.last.Store(&loggedErr{err, time.Now()})
		}
	}
	switch level {
	case kgo.LogLevelError:
		l.log.Error("franz-go: "+msg, keyvals...)
	case kgo.LogLevelWarn:
		l.log.Warn("franz-go: "+msg, keyvals...)
	}
}
