// Package null implements the `null` output: it accepts every batch at once
// and discards it. It exists for benchmarks and for measuring the reader.
package null

import (
	"context"
	"sync/atomic"

	"github.com/audittail/audittail/outputs"
)

// Output discards batches.
type Output struct {
	closed atomic.Bool
	events atomic.Int64
	bytes  atomic.Int64
}

var _ outputs.Output = (*Output)(nil)

// New returns a null output.
func New() *Output { return &Output{} }

// Send counts b and discards it.
func (o *Output) Send(ctx context.Context, b *outputs.Batch) error {
	if o.closed.Load() {
		return outputs.ErrClosed
	}
	o.events.Add(int64(b.Len()))
	o.bytes.Add(int64(b.Size()))
	return nil
}

// Close marks the output closed.
func (o *Output) Close(context.Context) error {
	o.closed.Store(true)
	return nil
}

// Events returns how many events were sent.
func (o *Output) Events() int64 { return o.events.Load() }

// Bytes returns how many bytes were sent, newlines included.
func (o *Output) Bytes() int64 { return o.bytes.Load() }
