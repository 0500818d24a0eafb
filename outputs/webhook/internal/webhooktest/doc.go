// Package webhooktest checks audittail's webhook output against a
// receiver that decodes each request with k8s.io/apiserver's audit v1
// types (the types kube-apiserver's webhook backend encodes) and enforces
// the limits of Falco's k8saudit plugin. It is a module of its own so that
// k8s.io/apiserver stays out of audittail's go.mod and binary.
package webhooktest
