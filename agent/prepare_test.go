package agent

import (
	"context"
	"errors"
	"hash/crc32"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/audittail/audittail/outputs"
	"github.com/audittail/audittail/outputs/file"
)

// preparingOutput is the file output with a Prepare that records what the
// agent does with it: the checksum of the lines it prepared (Send checks
// that a current prepared value is for the lines it is given), whether a
// Prepare ran while another batch was being sent (the point of preparing),
// and whether one ran on a batch while that batch was being sent (never).
// Every fifth Send takes all lines but the last and asks for that one
// again, so that the agent narrows a prepared batch.
type preparingOutput struct {
	outputs.Output
	mu      sync.Mutex
	sending *outputs.Batch
	sends   int
	overlap int // Prepares while another batch was in flight
	own     int // Prepares of the batch in flight
	used    int // Sends with a current prepared value
	stale   int // ... that was not for the batch's lines
}

type preparedSum struct {
	sum uint32
	n   int
}

func (p *preparingOutput) Prepare(b *outputs.Batch) {
	p.mu.Lock()
	if p.sending == b {
		p.own++
	} else if p.sending != nil {
		p.overlap++
	}
	p.mu.Unlock()
	b.SetPrepared(&preparedSum{crc32.ChecksumIEEE(b.Bytes()), b.Len()})
}

func (p *preparingOutput) Send(ctx context.Context, b *outputs.Batch) error {
	p.mu.Lock()
	p.sending, p.sends = b, p.sends+1
	if v, ok := b.Prepared(); ok {
		p.used++
		if s := v.(*preparedSum); s.sum != crc32.ChecksumIEEE(b.Bytes()) || s.n != b.Len() {
			p.stale++
		}
	}
	partial := p.sends%5 == 0 && b.Len() > 1
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.sending = nil
		p.mu.Unlock()
	}()
	time.Sleep(time.Millisecond) // the wait for an answer, during which the next batch is prepared
	if !partial {
		return p.Output.Send(ctx, b)
	}
	var head outputs.Batch
	for i := range b.Len() - 1 {
		head.Append(b.Line(i))
	}
	head.Parse(nil)
	if err := p.Output.Send(ctx, &head); err != nil {
		return err
	}
	return &outputs.PartialError{Lines: []int{b.Len() - 1}, Err: errors.New("the last line later")}
}

func TestTheNextBatchIsPreparedWhileOneIsInFlight(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Batch.MaxEvents = 20 })
	want := events(0, 3000)
	appendLines(t, h.input, want)
	log := h.log()
	var po *preparingOutput
	a, err := New(h.cfg, log, func(outputs.Config) (outputs.Output, error) {
		fo, err := file.New(file.Options{Path: h.out}, log)
		po = &preparingOutput{Output: fo}
		return po, err
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.run(a)
	got := waitLines(t, h.out, len(want), h.logBuf)
	h.stop()
	if !slices.Equal(got, want) {
		t.Fatalf("the output holds %d lines, want the input's %d in order", len(got), len(want))
	}
	po.mu.Lock()
	defer po.mu.Unlock()
	t.Logf("%d sends, %d with a prepared value, %d Prepares during another batch's Send", po.sends, po.used, po.overlap)
	switch {
	case po.own > 0:
		t.Errorf("%d Prepares of the batch being sent", po.own)
	case po.stale > 0:
		t.Errorf("%d Sends were given a prepared value that was not for their lines", po.stale)
	case po.used == 0:
		t.Error("no Send had a prepared batch")
	case po.overlap == 0:
		t.Error("no batch was prepared while another was in flight")
	}
}

// A stop while a batch is in flight and the next is prepared delivers
// the first, commits it, and leaves the prepared one to the next run: the
// two runs together send every event once.
func TestAStopWithABatchPreparedLosesAndRepeatsNothing(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Batch.MaxEvents = 20 })
	appendLines(t, h.input, events(0, 2000))
	var sent atomic.Int64
	start := func() {
		log := h.log()
		a, err := New(h.cfg, log, func(outputs.Config) (outputs.Output, error) {
			fo, err := file.New(file.Options{Path: h.out}, log)
			return &countingPreparer{preparingOutput: preparingOutput{Output: fo}, sent: &sent}, err
		}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		h.run(a)
	}
	start()
	waitLines(t, h.out, 500, h.logBuf) // stop in the middle
	h.stop()
	if n := sent.Load(); n >= 2000 {
		t.Logf("the first run sent everything (%d) before the stop", n)
	}
	start()
	got := waitLines(t, h.out, 2000, h.logBuf)
	h.stop()
	if !slices.Equal(got, events(0, 2000)) {
		t.Fatalf("the output holds %d lines, want 2000 in order, each once", len(got))
	}
	if n := sent.Load(); n != 2000 {
		t.Fatalf("the two runs sent %d events, want 2000", n)
	}
}

// countingPreparer counts the events its Sends accepted.
type countingPreparer struct {
	preparingOutput
	sent *atomic.Int64
}

func (c *countingPreparer) Send(ctx context.Context, b *outputs.Batch) error {
	err := c.Output.Send(ctx, b)
	if err == nil {
		c.sent.Add(int64(b.Len()))
	}
	return err
}
