package outputs

// Config is one entry of the `outputs:` list in the agent's configuration.
// It holds the keys of every sink type; each sink validates the ones it
// uses and New rejects keys that do not belong to the type.
type Config struct {
	// Name identifies the output in logs, metrics and the checkpoint. It
	// must be unique; renaming an output starts it afresh.
	Name string `yaml:"name"`
	// Type selects the sink: file, stdout or null.
	Type string `yaml:"type"`

	// Path is the file the `file` output appends JSON lines to.
	Path string `yaml:"path"`
	// MaxSizeMB rotates the `file` output (lumberjack) when it reaches this
	// many megabytes; 0 disables rotation.
	MaxSizeMB int `yaml:"max_size_mb"`
	// MaxBackups is how many rotated files the `file` output keeps (0: all).
	MaxBackups int `yaml:"max_backups"`
	// Compress gzips the `file` output's rotated files.
	Compress bool `yaml:"compress"`
}
