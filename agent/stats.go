package agent

import "sync/atomic"

// Stats counts what one pipeline did with one input. The counters are read
// concurrently (by the summary and, later, by metrics).
type Stats struct {
	ReadBytes     atomic.Int64 // bytes consumed from files (decompressed)
	Lines         atomic.Int64 // complete lines handed to batches
	OversizeLines atomic.Int64 // lines over max_line_bytes, skipped whole
	TornLines     atomic.Int64 // incomplete last lines of rotated files, skipped
	Rotations     atomic.Int64 // moves from one file to the next
	Truncations   atomic.Int64 // copytruncate detected: restarted at offset 0
	LostBytes     atomic.Int64 // bytes deleted before they were read
	LostFiles     atomic.Int64 // files deleted (wholly or partly) before they were read
}

// OutputStats counts what one pipeline delivered.
type OutputStats struct {
	Events          atomic.Int64 // events acknowledged by the output
	Bytes           atomic.Int64
	Batches         atomic.Int64 // batches acknowledged
	Failed          atomic.Int64 // failed Send calls (each retried or dropped)
	Retries         atomic.Int64
	Dropped         atomic.Int64 // events in batches rejected permanently
	CheckpointFails atomic.Int64
}
