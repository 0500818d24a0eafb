// This module only benchmarks parser.Scan against other Go JSON libraries
// (docs/decisions/0002-parser.md). It is a module of its own so that
// audittail does not depend on them.
module github.com/audittail/audittail/parser/internal/compare

go 1.26.0

replace github.com/audittail/audittail => ../../..

require (
	github.com/audittail/audittail v0.0.0-00010101000000-000000000000
	github.com/json-iterator/go v1.1.12
	github.com/valyala/fastjson v1.6.10
)

require (
	github.com/modern-go/concurrent v0.0.0-20180306012644-bacd9c7ef1dd // indirect
	github.com/modern-go/reflect2 v1.0.3-0.20250322232337-35a7c28c31ee // indirect
)
