// This module holds one-off experiments whose results are recorded in
// docs/decisions (nxadmtail: docs/decisions/0001-follower.md). It is a
// module of its own so that audittail does not depend on what they try out.
module github.com/audittail/audittail/scripts/experiments

go 1.26.0

replace github.com/audittail/audittail => ../..

require (
	github.com/audittail/audittail v0.0.0-00010101000000-000000000000
	github.com/nxadm/tail v1.4.11
	gopkg.in/natefinch/lumberjack.v2 v2.2.1
)

require (
	github.com/fsnotify/fsnotify v1.10.1 // indirect
	golang.org/x/sys v0.49.0 // indirect
	gopkg.in/tomb.v1 v1.0.0-20141024135613-dd632973f1e7 // indirect
)
