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
	"syscall"
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

type checkpointFile struct {
	Version int `json:"version"`
	// Cursors maps output name, then input path, to the position's state
	// as its source encoded it (for a file input, a file.Cursor).
	Cursors map[string]map[string]json.RawMessage `json:"cursors"`
}

// Store holds each output's position in each input and writes them
// atomically to state_dir/checkpoint.json. It knows nothing of what a
// position holds: each source encodes its own. It is safe for concurrent
// use.
type Store struct {
	path  string
	check CheckFunc
	lock  *os.File // flock held while the store is open

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
func OpenStore(dir string, reset bool, check CheckFunc) (*Store, error) {
	return openStore(dir, CheckpointFile, reset, check)
}

// CheckFunc validates a stored position of output in input; an error makes
// the checkpoint file unusable (as a torn one is).
type CheckFunc func(output, input string, state json.RawMessage) error

// BackfillCheckpointFile holds backfill's cursors, apart from the agent's.
const BackfillCheckpointFile = "backfill-checkpoint.json"

func openStore(dir, name string, reset bool, check CheckFunc) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create state_dir %s: %w", dir, err)
	}
	s := &Store{path: filepath.Join(dir, name), check: check}
	lock, err := lockState(s.path)
	if err != nil {
		return nil, err
	}
	s.lock = lock
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	s.state = checkpointFile{Version: checkpointVersion, Cursors: map[string]map[string]json.RawMessage{}}
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
		ok = true
		return s, nil
	}
	err = s.read(s.path)
	if err == nil || errors.Is(err, os.ErrNotExist) && !exists(synced) {
		ok = true
		return s, nil
	}
	// The checkpoint written after the last batch was not fsynced: after a
	// crash of the machine it may be empty or torn. The last fsynced copy
	// is a little older, and safe.
	if serr := s.read(synced); serr == nil {
		ok = true
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

// read reads and strictly decodes one checkpoint file.
func (s *Store) read(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return decodeCheckpoint(data, &s.state, s.check)
}

func decodeCheckpoint(data []byte, st *checkpointFile, check CheckFunc) error {
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
		f.Cursors = map[string]map[string]json.RawMessage{}
	}
	for out, m := range f.Cursors {
		for in, c := range m {
			if check == nil {
				continue
			}
			if err := check(out, in, c); err != nil {
				return fmt.Errorf("invalid position for output %q input %q: %w", out, in, err)
			}
		}
	}
	*st = f
	return nil
}

// Path returns the checkpoint file's path.
func (s *Store) Path() string { return s.path }

// Position returns the stored position state of output in input (nil if
// none).
func (s *Store) Position(output, input string) json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.Cursors[output][input]
}

// Set records a position in memory; Flush makes it durable.
func (s *Store) Set(output, input string, c json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.state.Cursors[output]
	if m == nil {
		m = map[string]json.RawMessage{}
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

// lockSuffix names the lock file beside a checkpoint.
const lockSuffix = ".lock"

// lockState takes an exclusive, non-blocking flock on path+".lock" and
// writes our pid into it, so that a second agent on the same state_dir (a
// systemd unit and a DaemonSet on one k3s node, a debug run) fails at
// start naming the first, instead of removing its temporary checkpoints.
// The lock goes with the process: a crash never leaves it stale.
func lockState(path string) (*os.File, error) {
	lp := path + lockSuffix
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot open lock file %s: %w", lp, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(lp)
		f.Close()
		who := strings.TrimSpace(string(holder))
		if who == "" {
			who = "unknown pid"
		}
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by another audittail process (%s); two agents must not share a state_dir (give each its own, or stop the other one)", ErrLocked, lp, who)
		}
		return nil, fmt.Errorf("cannot lock %s: %w", lp, err)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "pid %d\n", os.Getpid())
	}
	return f, nil
}

// ErrLocked is returned (wrapped) when another process holds the state.
var ErrLocked = errors.New("state_dir in use")

// Close releases the lock on the state. The store must not be flushed
// after Close.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
}
