package outputs

// Syncer is implemented by outputs whose acknowledged data sits in the
// page cache until synced (file). The agent calls Sync before it fsyncs
// the checkpoint, so that after a machine crash the checkpoint never names
// lines the sink does not have. Sync may be called concurrently with Send.
type Syncer interface {
	Sync() error
}
