package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// CheckpointFile is the name of the checkpoint in state_dir.
const CheckpointFile = "checkpoint.json"

const checkpointVersion = 1

// ErrCorruptCheckpoint is returned (wrapped, with the file named) when the
// checkpoint cannot be decoded. The agent refuses to start rather than
// silently reading from scratch; `audittail run --reset-checkpoint` moves
// the file aside and starts over from each input's start_at.
var ErrCorruptCheckpoint = errors.New("corrupt checkpoint")

// Cursor is how far one output has delivered one input: the file it was
// reading and the offset just past the last acknowledged line.
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
	Pending []fileRef `json:"pending,omitempty"`
}

type checkpointFile struct {
	Version int `json:"version"`
	// Cursors maps output name, then input path, to the cursor.
	Cursors map[string]map[string]Cursor `json:"cursors"`
}

// Store holds the cursors of every pipeline and writes them atomically to
// state_dir/checkpoint.json. It is safe for concurrent use.
type Store struct {
	path string

	mu     sync.Mutex
	state  checkpointFile
	gen    uint64 // bumped by Set
	saved  uint64 // generation written (in the page cache at least)
	synced uint64 // generation fsynced

	writeMu    sync.Mutex
	memoryOnly bool // dry runs keep cursors in memory only

	// Recovered, when not empty, says that the checkpoint was unusable and
	// the fsynced copy was used instead (for the log).
	Recovered string
}

// OpenStore loads the checkpoint in dir, creating dir if needed and removing
// temporary files left by a crash during a write. With reset, an existing
// checkpoint is renamed aside (checkpoint.json.reset-<time>) and the store
// starts empty.
func OpenStore(dir string, reset bool) (*Store, error) {
	return openStore(dir, CheckpointFile, reset)
}

// BackfillCheckpointFile holds backfill's cursors, apart from the agent's.
const BackfillCheckpointFile = "backfill-checkpoint.json"

func openStore(dir, name string, reset bool) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create state_dir %s: %w", dir, err)
	}
	s := &Store{path: filepath.Join(dir, name)}
	s.state = checkpointFile{Version: checkpointVersion, Cursors: map[string]map[string]Cursor{}}
	synced := s.path + syncedSuffix
	stray, _ := filepath.Glob(filepath.Join(dir, name+".tmp-*"))
	strayCopies, _ := filepath.Glob(filepath.Join(dir, name+syncedSuffix+".tmp-*"))
	for _, p := range append(stray, strayCopies...) {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("cannot remove stray temporary checkpoint %s: %w", p, err)
		}
	}
	if reset {
		stamp := ".reset-" + time.Now().UTC().Format("20060102T150405")
		for _, p := range []string{s.path, synced} {
			if err := os.Rename(p, p+stamp); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("cannot move checkpoint %s aside: %w", p, err)
			}
		}
		return s, nil
	}
	err := readCheckpoint(s.path, &s.state)
	if err == nil || errors.Is(err, os.ErrNotExist) && !exists(synced) {
		return s, nil
	}
	// The checkpoint written after the last batch was not fsynced: after a
	// crash of the machine it may be empty or torn. The last fsynced copy
	// is a little older, and safe.
	if serr := readCheckpoint(synced, &s.state); serr == nil {
		s.Recovered = fmt.Sprintf("checkpoint %s unusable (%v); resumed from the last fsynced copy %s, so up to checkpoint_interval of events may be sent again", s.path, err, synced)
		return s, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		err = fmt.Errorf("missing, and its fsynced copy %s is unusable", synced)
	}
	return nil, fmt.Errorf("%w %s: %v; the agent will not guess where to resume: "+
		"move the file aside or run `audittail run --reset-checkpoint` to start over from each input's start_at", ErrCorruptCheckpoint, s.path, err)
}

// syncedSuffix names the fsynced copy of a checkpoint.
const syncedSuffix = ".synced"

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// readCheckpoint reads and strictly decodes one checkpoint file.
func readCheckpoint(path string, st *checkpointFile) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return decodeCheckpoint(data, st)
}

func decodeCheckpoint(data []byte, st *checkpointFile) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f checkpointFile
	if err := dec.Decode(&f); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the checkpoint object")
	}
	if f.Version != checkpointVersion {
		return fmt.Errorf("unsupported version %d (want %d)", f.Version, checkpointVersion)
	}
	if f.Cursors == nil {
		f.Cursors = map[string]map[string]Cursor{}
	}
	for out, m := range f.Cursors {
		for in, c := range m {
			if c.Offset < 0 || c.Size < 0 || (c.FP.Len > 0) != (c.FP.Sum != "") {
				return fmt.Errorf("invalid cursor for output %q input %q", out, in)
			}
		}
	}
	*st = f
	return nil
}

// Path returns the checkpoint file's path.
func (s *Store) Path() string { return s.path }

// Cursor returns the cursor of output for input.
func (s *Store) Cursor(output, input string) (Cursor, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.state.Cursors[output][input]
	return c, ok
}

// Set records a cursor in memory; Flush makes it durable.
func (s *Store) Set(output, input string, c Cursor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.state.Cursors[output]
	if m == nil {
		m = map[string]Cursor{}
		s.state.Cursors[output] = m
	}
	m[input] = c
	s.gen++
}

// Flush writes the cursors if they changed since the last write, replacing
// the checkpoint atomically (temporary file, rename). With sync it also
// makes them durable across a machine crash: fsync the file before the
// rename and the directory after; without, the new checkpoint survives a
// crash of the process (the kernel has it) but maybe not of the machine.
func (s *Store) Flush(sync bool) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	gen := s.gen
	if s.memoryOnly || gen == s.synced || (!sync && gen == s.saved) {
		s.mu.Unlock()
		return nil
	}
	data, err := json.MarshalIndent(&s.state, "", "  ")
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("cannot encode checkpoint %s: %w", s.path, err)
	}
	data = append(data, '\n')
	if gen != s.saved || sync {
		if err := writeFileAtomic(s.path, data, sync); err != nil {
			return err
		}
	}
	if sync {
		// A second, always fsynced copy: what a restart falls back to if a
		// crash of the machine tore the unsynced writes of the main file.
		if err := writeFileAtomic(s.path+syncedSuffix, data, true); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.saved = gen
	if sync {
		s.synced = gen
	}
	s.mu.Unlock()
	return nil
}

func writeFileAtomic(path string, data []byte, sync bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("cannot write checkpoint %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("cannot write checkpoint %s: %w", path, err)
	}
	// os.CreateTemp creates the file with mode 0600.
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cannot write checkpoint %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cannot write checkpoint %s: %w", path, err)
	}
	if !sync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cannot sync state_dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !strings.Contains(err.Error(), "invalid argument") {
		return fmt.Errorf("cannot sync state_dir %s: %w", dir, err)
	}
	return nil
}
