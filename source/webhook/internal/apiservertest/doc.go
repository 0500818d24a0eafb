// Package apiservertest drives audittail's webhook input with
// kube-apiserver's own audit webhook client (k8s.io/apiserver's webhook
// backend inside its buffered backend, configured as kube-apiserver
// configures batch mode). It is a module of its own so that k8s.io/apiserver
// stays out of audittail's go.mod and binary.
package apiservertest
