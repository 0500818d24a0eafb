// This module only benchmarks other Go forward-protocol clients against the
// fluentd output (docs/decisions/0003-fluentd-output.md). It is a module of
// its own so that audittail does not depend on them.
module github.com/audittail/audittail/outputs/fluentd/internal/compare

go 1.26.0

replace github.com/audittail/audittail => ../../../..

require (
	github.com/IBM/fluent-forward-go v0.4.0
	github.com/audittail/audittail v0.0.0-00010101000000-000000000000
	github.com/fluent/fluent-logger-golang v1.10.2
	github.com/tinylib/msgp v1.6.5
)

require (
	github.com/google/uuid v1.6.0 // indirect
	github.com/gorilla/websocket v1.4.2 // indirect
	github.com/philhofer/fwd v1.2.0 // indirect
	github.com/rogpeppe/go-internal v1.16.0 // indirect
	github.com/vmihailenco/msgpack/v5 v5.4.1 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
