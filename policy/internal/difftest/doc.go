// Package difftest compares audittail's policy evaluation (package policy)
// with kube-apiserver's own (k8s.io/apiserver/pkg/audit/policy), in a
// module of its own so that k8s.io/apiserver stays out of audittail's
// go.mod and binary.
package difftest
