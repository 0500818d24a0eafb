// Package otlptest drives audittail's otlp output against an OTLP/HTTP
// receiver built on go.opentelemetry.io/collector/pdata (plogotlp), the
// decoder the OpenTelemetry Collector itself uses.
package otlptest
