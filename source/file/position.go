package file

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/audittail/audittail/source"
)

// Cursor is this source's Position state: the file being read and the
// offset just past the last line of a chunk. Its JSON form is what the
// checkpoint stores (unchanged since checkpoint version 1).
type Cursor struct {
	// Path is where the file was when the cursor was taken.
	Path string `json:"path"`
	Dev  uint64 `json:"dev,omitempty"`
	Ino  uint64 `json:"ino,omitempty"`
	// FP is the fingerprint of the file's first line; empty when nothing of
	// the file was delivered yet (then the cursor means: start at Offset of
	// the first file written after Order).
	FP fingerprint `json:"fingerprint"`
	// Offset is in decompressed bytes.
	Offset int64 `json:"offset"`
	// Size is the file's size when last seen, to count lost bytes if the
	// file disappears before it is read to the end.
	Size int64 `json:"size"`
	// Order places the file among the rotated backups: its lumberjack
	// rotation time when known, otherwise the time the agent first opened
	// it as the live file (which is before it was rotated).
	Order time.Time `json:"order"`
	// Pending are the backups known to be newer than this file and not yet
	// read when the cursor was taken; if they are gone at restart, their
	// bytes are counted as lost.
	Pending []Ref `json:"pending,omitempty"`
	// Done are the fingerprints of the last files read to their end before
	// this one: a reader that resumes here (after a restart, or an output
	// catching up on its own) never reads them again, whatever the times
	// in their names say.
	Done []fingerprint `json:"done,omitempty"`
	// LastTS is the stageTimestamp of the last event before Offset (RFC
	// 3339): where a gap found at restart starts. Empty in checkpoints
	// written before it existed.
	LastTS string `json:"last_ts,omitempty"`
}

// ErrBadPosition is returned (wrapped) for a position this source cannot
// decode.
var ErrBadPosition = errors.New("invalid file position")

// decodeCursor strictly decodes a Position state; nil means none.
func decodeCursor(state json.RawMessage) (*Cursor, error) {
	if len(state) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(state))
	dec.DisallowUnknownFields()
	var c Cursor
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPosition, err)
	}
	if c.Offset < 0 || c.Size < 0 || (c.FP.Len > 0) != (c.FP.Sum != "") {
		return nil, fmt.Errorf("%w: negative offset or size, or a half fingerprint", ErrBadPosition)
	}
	return &c, nil
}

// CheckPosition reports whether state is a position this source can
// resume from (the checkpoint store validates what it loads with it).
func CheckPosition(state json.RawMessage) error {
	_, err := decodeCursor(state)
	return err
}

// DecodePosition returns the cursor a position state holds (metrics).
func DecodePosition(state json.RawMessage) (Cursor, error) {
	c, err := decodeCursor(state)
	if err != nil || c == nil {
		return Cursor{}, err
	}
	return *c, nil
}

// position encodes c as a source.Position.
func (f *follower) position(c Cursor) (source.Position, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return source.Position{}, err
	}
	return source.Position{Stream: c.FP.Sum, Offset: c.Offset, State: b}, nil
}
