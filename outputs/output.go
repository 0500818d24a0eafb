// Package outputs defines the contract between the agent and the sinks that
// receive audit events, and the types they share. Each sink lives in its own
// sub-package (outputs/file, outputs/null, ...) and implements Output.
package outputs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/audittail/audittail/parser"
)

// Output sends batches of audit events to one sink.
//
// Send returns nil only when the sink has accepted the whole batch: the
// bytes are written (file, stdout), acknowledged (fluentd ack, HTTP 2xx), or
// written and flushed to the connection (syslog over TCP/TLS). Any other
// return leaves the batch unacknowledged: the agent keeps the checkpoint
// before it and sends the batch again, so a sink may see a batch twice but
// never a gap. Errors wrapped with Permanent are not retried.
//
// The agent calls Send from one goroutine per output at a time; Send must
// honour ctx (return promptly with ctx.Err() when it is done). The batch and
// its bytes belong to the caller again once Send returns: a sink must copy
// anything it keeps.
//
// Close flushes and releases the sink. Send after Close returns ErrClosed.
// Close is called once, after the last Send has returned.
type Output interface {
	Send(ctx context.Context, b *Batch) error
	Close(ctx context.Context) error
}

// Preparer is implemented by outputs that can do a batch's work
// (encoding, compressing) before Send: the agent calls Prepare for the
// next batch while the one before is in flight, so that the work overlaps
// the wait for the sink's answer. Prepare may run while Send runs and
// while other Prepares run (other batches: one per stream of the output),
// so it must use only the batch's own storage; it must not fail: it stores
// its result with b.SetPrepared, and Send uses it if b.Prepared says it
// still holds (Keep, View and Reset void it), doing the work itself
// otherwise. A batch is prepared again only after the Send of its previous
// lines returned: an output may reuse the value's buffers then.
type Preparer interface {
	Prepare(b *Batch)
}

// ErrClosed is returned by Send on an output that was closed.
var ErrClosed = errors.New("output closed")

// RejectedError reports that the sink accepted a batch except for some lines,
// which it rejected permanently (a record the sink refuses). The agent
// dead-letters those lines and acknowledges the batch.
type RejectedError struct {
	Lines []int // indexes into the batch, ascending
	Err   error
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("%d of the batch's events rejected: %v", len(e.Lines), e.Err)
}
func (e *RejectedError) Unwrap() error { return e.Err }

// PartialError reports that the sink accepted a batch except for some
// lines that may succeed later (HTTP 207 with retryable failures). The agent
// sends a batch of just those lines again, with backoff.
type PartialError struct {
	Lines []int // indexes into the batch, ascending
	Err   error
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("%d of the batch's events not accepted yet: %v", len(e.Lines), e.Err)
}
func (e *PartialError) Unwrap() error { return e.Err }

// RetryAfterError asks the agent to wait at least After before retrying
// (HTTP 429/503 with Retry-After).
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}
func (e *RetryAfterError) Unwrap() error { return e.Err }

// Checker is implemented by outputs that can test that their sink is
// reachable without sending events (`audittail validate --connect`).
type Checker interface {
	Check(ctx context.Context) error
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that IsPermanent reports true for it: the agent will
// not retry the batch (it dead-letters it instead). Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was made by
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// Batch is a run of complete audit event lines, in the order they were read
// from one input. Each line is followed by '\n', so that Bytes is ready to
// write as JSON lines.
//
// A Batch is either built with Append (and Parse), or a read-only View of
// lines parsed elsewhere (a chunk that several outputs share). Keep narrows
// either without moving or changing a byte of the lines, so the parse
// results stay valid. A Batch is reused by the agent after Send returns; it
// is not safe for concurrent mutation.
type Batch struct {
	// Input is the configured name of the input the lines came from.
	Input string

	buf    []byte // the lines' storage: own (Append) or shared (View)
	starts []int  // line i is buf[starts[i]:ends[i]], its '\n' included
	ends   []int
	events []parser.Event
	parsed []bool
	size   int
	view   bool // buf, events and parsed are shared: never written
	gapped bool // Keep removed lines: they are no longer back to back

	own       []parser.Event // Keep's copy of a view's events and parsed
	ownOK     []bool
	ownEvents bool   // events and parsed are own, not a view's
	scratch   []byte // Bytes of a gapped batch

	prepared any  // the output's Prepare result (kept for its buffers)
	prepOK   bool // prepared is for the lines the batch holds now
}

// SetPrepared stores v, an output's prepared form of the batch's lines as
// they are now (see Preparer).
func (b *Batch) SetPrepared(v any) { b.prepared, b.prepOK = v, true }

// Prepared returns the last value given to SetPrepared, and whether it is
// still for the lines the batch holds (the batch has not changed since).
// A stale value is returned too, so that its buffers can be reused.
func (b *Batch) Prepared() (v any, current bool) { return b.prepared, b.prepOK }

// Len returns the number of lines in the batch.
func (b *Batch) Len() int { return len(b.ends) }

// Size returns the number of bytes in the batch, newlines included.
func (b *Batch) Size() int { return b.size }

// Line returns the i-th line without its trailing newline. The slice aliases
// the batch's storage.
func (b *Batch) Line(i int) []byte { return b.buf[b.starts[i] : b.ends[i]-1] }

// Bytes returns every line, each followed by '\n'. The slice aliases the
// batch's storage (or, after Keep, a buffer of the batch's own).
func (b *Batch) Bytes() []byte {
	if len(b.ends) == 0 {
		return nil
	}
	if !b.gapped {
		return b.buf[b.starts[0]:b.ends[len(b.ends)-1]]
	}
	b.scratch = b.scratch[:0]
	for i := range b.ends {
		b.scratch = append(b.scratch, b.buf[b.starts[i]:b.ends[i]]...)
	}
	return b.scratch
}

// Append copies line (which must not contain '\n') into the batch. It must
// not be called on a View.
func (b *Batch) Append(line []byte) {
	if b.view {
		panic("outputs: Append on a Batch view")
	}
	b.prepOK = false
	b.starts = append(b.starts, len(b.buf))
	b.buf = append(b.buf, line...)
	b.buf = append(b.buf, '\n')
	b.ends = append(b.ends, len(b.buf))
	b.size += len(line) + 1
}

// View makes b show the lines of buf, which end at ends (each line with
// its '\n', back to back), with their parse results events and parsed (one
// per line). b writes to none of them: several Batches may view the same
// lines at once.
func (b *Batch) View(input string, buf []byte, ends []int, events []parser.Event, parsed []bool) {
	b.Reset()
	b.Input, b.view = input, true
	n := len(ends)
	b.buf = buf // whole: the events' views are located in it by capacity (outputs.CutObjects)
	b.ends = append(b.ends[:0], ends...)
	b.starts = slicesGrow(b.starts, n)
	for i := range n {
		if i > 0 {
			b.starts[i] = ends[i-1]
		} else {
			b.starts[i] = 0
		}
	}
	if n > 0 {
		b.size = ends[n-1]
	}
	b.events, b.parsed = events[:n:n], parsed[:n:n]
}

// Parse scans every line with parser.Scan, once, so that Event can return
// the fields. It calls onErr for each line that is not a valid audit event
// (such a line stays in the batch; Event returns nil for it). It must not
// be called on a View (its lines are parsed already).
func (b *Batch) Parse(onErr func(i int, err error)) {
	if b.view {
		panic("outputs: Parse on a Batch view")
	}
	b.prepOK = false
	n := len(b.ends)
	b.events = slicesGrow(b.events, n)
	b.parsed = slicesGrow(b.parsed, n)
	for i := range n {
		err := parser.Scan(b.Line(i), &b.events[i])
		b.parsed[i] = err == nil
		if err != nil && onErr != nil {
			onErr(i, err)
		}
	}
}

func slicesGrow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// Event returns the parsed fields of line i, or nil if the batch was not
// parsed or the line is not a valid audit event (sinks then send the raw
// line with default metadata). The Event's slices alias the lines.
func (b *Batch) Event(i int) *parser.Event {
	if i >= len(b.parsed) || !b.parsed[i] {
		return nil
	}
	return &b.events[i]
}

// Keep reduces the batch to the lines whose indexes are in keep
// (ascending), in order. No byte moves: the parse results stay valid.
func (b *Batch) Keep(keep []int) {
	b.prepOK = false
	parsed := len(b.parsed) == len(b.ends)
	if parsed && b.view && !b.ownEvents {
		// The events are shared with other views: compact a copy.
		b.own = append(b.own[:0], b.events...)
		b.ownOK = append(b.ownOK[:0], b.parsed...)
		b.events, b.parsed, b.ownEvents = b.own, b.ownOK, true
	}
	w, size := 0, 0
	for _, i := range keep {
		// keep is ascending, so w <= i: compacting in place is safe.
		if w > 0 && b.starts[i] != b.ends[w-1] {
			b.gapped = true
		}
		b.starts[w], b.ends[w] = b.starts[i], b.ends[i]
		size += b.ends[w] - b.starts[w]
		if parsed {
			b.events[w], b.parsed[w] = b.events[i], b.parsed[i]
		}
		w++
	}
	b.starts, b.ends, b.size = b.starts[:w], b.ends[:w], size
	if parsed {
		b.events, b.parsed = b.events[:w], b.parsed[:w]
	} else {
		b.parsed = b.parsed[:0]
	}
}

// Reset empties the batch, keeping its own storage.
func (b *Batch) Reset() {
	if b.view {
		b.buf, b.events, b.parsed = nil, nil, nil
	}
	b.buf = b.buf[:0]
	b.starts, b.ends = b.starts[:0], b.ends[:0]
	b.parsed = b.parsed[:0]
	b.size, b.view, b.gapped, b.ownEvents = 0, false, false, false
	b.Input = ""
	b.prepOK = false
}
