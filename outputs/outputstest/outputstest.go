// Package outputstest is the conformance suite every output passes: the
// same tests, run against each sink and a real listener on 127.0.0.1.
package outputstest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/parser"
	"github.com/audittail/audittail/parser/auditgen"
)

// Harness connects the suite to one sink and its receiver.
type Harness struct {
	// New returns an output that delivers to the receiver. The suite
	// closes it.
	New func(t *testing.T) outputs.Output
	// Received returns the auditIDs the receiver has accepted so far, in
	// arrival order, decoded with a decoder independent of the sink.
	Received func() []string
	// FailTransient makes the receiver fail the next n deliveries in a way
	// that must be retried (HTTP 5xx, an ack withheld, a closed connection).
	FailTransient func(n int)
	// FailPermanent makes the receiver reject the next n deliveries
	// permanently (HTTP 4xx). Nil for sinks that cannot reject (syslog).
	FailPermanent func(n int)
	// Reset forgets what was received. Called before each test.
	Reset func()
}

// NewBatch returns a parsed batch of n realistic events (mixed levels) with
// the auditIDs it holds.
func NewBatch(seed uint64, n int) (*outputs.Batch, []string) {
	b := &outputs.Batch{}
	return b, fill(b, seed, n)
}

// fill empties b and fills it as NewBatch does, keeping its storage (and
// its prepared value, no longer current), as the agent reuses batches.
func fill(b *outputs.Batch, seed uint64, n int) []string {
	g := auditgen.New(seed)
	b.Reset()
	b.Input = "/var/log/kubernetes/audit/audit.log"
	ids := make([]string, 0, n)
	var buf []byte
	ts := time.Date(2026, 11, 23, 10, 54, 44, 671393000, time.UTC)
	for i := range n {
		buf = g.AppendMixed(buf[:0], ts.Add(time.Duration(i)*time.Millisecond))
		b.Append(buf[:len(buf)-1])
	}
	b.Parse(nil)
	for i := range n {
		id, _ := parser.Unquote(nil, b.Event(i).AuditID)
		ids = append(ids, string(id))
	}
	return ids
}

// stall is how long waitReceived waits without a new event arriving
// before it gives up: a slow machine makes delivery slow, not stop.
const stall = 30 * time.Second

// waitReceived waits until the receiver holds at least n auditIDs, or
// until none has arrived for stall.
func waitReceived(t *testing.T, h Harness, n int) []string {
	t.Helper()
	return waitUntil(h, func(got []string) bool { return len(got) >= n })
}

// waitUntil returns what the receiver holds once done says it is
// enough, or once nothing has arrived for stall.
func waitUntil(h Harness, done func(got []string) bool) []string {
	prev, since := -1, time.Now()
	for {
		got := h.Received()
		if done(got) {
			return got
		}
		if len(got) != prev {
			prev, since = len(got), time.Now()
		} else if time.Since(since) > stall {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectInOrder fails t unless the first events the receiver gets are
// want, in order (more arriving later goes unseen).
func expectInOrder(t *testing.T, h Harness, want []string) {
	t.Helper()
	if got := waitReceived(t, h, len(want)); !slices.Equal(got, want) {
		t.Fatalf("received %d events, want the %d sent, in order (first received %.3q, first sent %.3q)", len(got), len(want), got, want)
	}
}

// waitAll waits until the receiver holds every event of want, or until
// none has arrived for stall.
func waitAll(t *testing.T, h Harness, want []string) error {
	t.Helper()
	return contains(waitUntil(h, func(got []string) bool { return contains(got, want) == nil }), want)
}

func contains(got []string, want []string) error {
	set := make(map[string]int, len(got))
	for _, id := range got {
		set[id]++
	}
	for _, id := range want {
		if set[id] == 0 {
			return fmt.Errorf("event %s was not received", id)
		}
	}
	return nil
}

// Run runs the suite. An output that is an outputs.Preparer runs it twice:
// with every batch prepared first (once, as the agent does: a retry sends
// what was prepared), and without.
func Run(t *testing.T, h Harness) {
	if h.Reset != nil {
		h.Reset()
	}
	o := h.New(t)
	_, ok := o.(outputs.Preparer)
	o.Close(context.Background())
	if !ok {
		run(t, h, false)
		return
	}
	t.Run("prepared", func(t *testing.T) { run(t, h, true); runPrepared(t, h) })
	t.Run("unprepared", func(t *testing.T) { run(t, h, false) })
}

func run(t *testing.T, h Harness, prepare bool) {
	reset := func() {
		if h.Reset != nil {
			h.Reset()
		}
	}
	send := func(t *testing.T, o outputs.Output, b *outputs.Batch) error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if p, ok := o.(outputs.Preparer); ok && prepare {
			if _, current := b.Prepared(); !current {
				p.Prepare(b)
			}
		}
		return o.Send(ctx, b)
	}

	t.Run("delivers every event of a batch in order", func(t *testing.T) {
		reset()
		o := h.New(t)
		defer o.Close(context.Background())
		b, ids := NewBatch(1, 200)
		if err := send(t, o, b); err != nil {
			t.Fatalf("Send: %v", err)
		}
		expectInOrder(t, h, ids)
	})

	t.Run("keeps batches in the order they were sent", func(t *testing.T) {
		reset()
		o := h.New(t)
		defer o.Close(context.Background())
		var want []string
		for i := range 5 {
			b, ids := NewBatch(uint64(10+i), 50)
			if err := send(t, o, b); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
			want = append(want, ids...)
		}
		expectInOrder(t, h, want)
	})

	t.Run("reports a transient failure so the batch is sent again", func(t *testing.T) {
		if h.FailTransient == nil {
			t.Skip("the sink has no transient failure to simulate")
		}
		reset()
		o := h.New(t)
		defer o.Close(context.Background())
		b, ids := NewBatch(20, 30)
		h.FailTransient(1)
		err := send(t, o, b)
		if err == nil {
			t.Fatal("Send returned nil although the receiver did not accept the batch")
		}
		if outputs.IsPermanent(err) {
			t.Fatalf("a transient failure was reported as permanent: %v", err)
		}
		if err := send(t, o, b); err != nil {
			t.Fatalf("retry: %v", err)
		}
		if err := contains(waitReceived(t, h, len(ids)), ids); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("reports a permanent rejection as permanent", func(t *testing.T) {
		if h.FailPermanent == nil {
			t.Skip("the sink cannot reject a batch")
		}
		reset()
		o := h.New(t)
		defer o.Close(context.Background())
		b, _ := NewBatch(30, 10)
		h.FailPermanent(1)
		err := send(t, o, b)
		var rej *outputs.RejectedError
		if err == nil || !(outputs.IsPermanent(err) || errors.As(err, &rej)) {
			t.Fatalf("Send = %v, want a permanent error", err)
		}
	})

	t.Run("has delivered everything once Close returns", func(t *testing.T) {
		reset()
		o := h.New(t)
		var want []string
		for i := range 3 {
			b, ids := NewBatch(uint64(40+i), 20)
			if err := send(t, o, b); err != nil {
				t.Fatalf("Send: %v", err)
			}
			want = append(want, ids...)
		}
		if err := o.Close(context.Background()); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := contains(waitReceived(t, h, len(want)), want); err != nil {
			t.Fatal(err)
		}
		b, _ := NewBatch(50, 1)
		if err := send(t, o, b); !errors.Is(err, outputs.ErrClosed) {
			t.Fatalf("Send after Close = %v, want ErrClosed", err)
		}
	})

	t.Run("returns promptly when the context is cancelled", func(t *testing.T) {
		reset()
		o := h.New(t)
		defer o.Close(context.Background())
		b, _ := NewBatch(60, 10)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan error, 1)
		go func() { done <- o.Send(ctx, b) }()
		select {
		case err := <-done:
			if err == nil {
				// Accepting a batch before noticing the cancellation is
				// allowed only if it was really delivered.
				if err := contains(waitReceived(t, h, 10), nil); err != nil {
					t.Fatal(err)
				}
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Send ignored a cancelled context for 5s")
		}
	})
}

// runPrepared checks what only a Preparer must get right: the batch may
// change after Prepare, and the next batch is prepared while the one
// before is in flight.
func runPrepared(t *testing.T, h Harness) {
	// start resets the receiver and returns a new output, closed when
	// the test ends.
	start := func(t *testing.T) (outputs.Output, outputs.Preparer) {
		if h.Reset != nil {
			h.Reset()
		}
		o := h.New(t)
		t.Cleanup(func() { o.Close(context.Background()) })
		return o, o.(outputs.Preparer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("sends the lines a batch holds, not those it held when prepared", func(t *testing.T) {
		o, p := start(t)
		b, ids := NewBatch(70, 20)
		p.Prepare(b)
		keep := []int{1, 5, 6, 19}
		b.Keep(keep)
		if err := o.Send(ctx, b); err != nil {
			t.Fatalf("Send: %v", err)
		}
		var want []string
		for _, i := range keep {
			want = append(want, ids[i])
		}
		expectInOrder(t, h, want)
	})

	t.Run("sends the lines a batch holds after it was refilled with as many", func(t *testing.T) {
		o, p := start(t)
		b := prepared(p, 72, 20)
		want := fill(b, 73, 20) // the same length, other events
		if err := o.Send(ctx, b); err != nil {
			t.Fatalf("Send: %v", err)
		}
		expectInOrder(t, h, want)
	})

	t.Run("prepares a batch again after its Send failed", func(t *testing.T) {
		// A failed Send may leave the prepared value in use (a Kafka
		// produce still in flight), and the batch may be prepared again
		// with other lines (the agent moves on after dead-lettering):
		// that must not write over what the sink may still read.
		o, p := start(t)
		b := prepared(p, 90, 20)
		h.FailTransient(1)
		if err := o.Send(ctx, b); err == nil {
			t.Fatal("Send returned nil although the receiver did not accept the batch")
		}
		want := fill(b, 91, 20)
		p.Prepare(b)
		for attempt := 1; ; attempt++ {
			err := o.Send(ctx, b)
			if err == nil {
				break
			}
			if outputs.IsPermanent(err) || attempt == 20 {
				t.Fatalf("Send of the next lines, attempt %d: %v", attempt, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// The first lines may arrive too, even twice: wait for every one
		// of the second, not for a count.
		if err := waitAll(t, h, want); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("prepares batches of several streams at once", func(t *testing.T) {
		o, p := start(t)
		var bufs [3]outputs.Batch
		var ids [3][]string
		var wg sync.WaitGroup
		for i := range bufs {
			ids[i] = fill(&bufs[i], uint64(74+i), 30)
			wg.Go(func() { p.Prepare(&bufs[i]) })
		}
		wg.Wait()
		var want []string
		for i := range bufs {
			if err := o.Send(ctx, &bufs[i]); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
			want = append(want, ids[i]...)
		}
		expectInOrder(t, h, want)
	})

	t.Run("prepares the next batch while one is in flight", func(t *testing.T) {
		o, p := start(t)
		// Two batches reused in turn, as the agent reuses them: each is
		// prepared while the other's Send runs.
		var bufs [2]outputs.Batch
		want := fill(&bufs[0], 80, 40)
		p.Prepare(&bufs[0])
		for i := 1; i <= 6; i++ {
			done := make(chan error, 1)
			go func(b *outputs.Batch) { done <- o.Send(ctx, b) }(&bufs[(i-1)%2])
			next := &bufs[i%2]
			ids := fill(next, uint64(80+i), 40)
			p.Prepare(next)
			if err := <-done; err != nil {
				t.Fatalf("Send %d: %v", i-1, err)
			}
			want = append(want, ids...)
		}
		if err := o.Send(ctx, &bufs[6%2]); err != nil {
			t.Fatalf("last Send: %v", err)
		}
		expectInOrder(t, h, want)
	})
}

// prepared returns a batch of n events, filled as NewBatch does, that p
// has prepared.
func prepared(p outputs.Preparer, seed uint64, n int) *outputs.Batch {
	b := &outputs.Batch{}
	fill(b, seed, n)
	p.Prepare(b)
	return b
}
