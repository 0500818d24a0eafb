#!/bin/sh
# make-certs.sh: the certificates and token of an audittail webhook, with
# openssl only.
#
#   ./make-certs.sh CLUSTER_IP [DIR]
#
# CLUSTER_IP is the audittail Service's cluster IP, which kube-apiserver
# posts to:
#   kubectl -n audittail get service audittail-webhook -o jsonpath='{.spec.clusterIP}'
# Writes into DIR (default: the current directory), every file mode 0600:
#   ca.crt, ca.key          a CA for this webhook only (keep ca.key offline)
#   server.crt, server.key  audittail's listener: IP:CLUSTER_IP, the
#                           Service's DNS names and 127.0.0.1 (to check it
#                           through kubectl port-forward), serverAuth
#   client.crt, client.key  kube-apiserver's client certificate, clientAuth
#   token                   a random bearer token, one line
# The certificates are valid for 825 days (the CA for 10 years): renew
# before, and restart audittail (it reads its certificate at start).
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	echo "usage: $0 CLUSTER_IP [DIR]" >&2
	exit 2
fi
ip=$1
dir=${2:-.}
days=825
svc=audittail-webhook.audittail.svc

umask 077
mkdir -p "$dir"
cd "$dir"
ext=$(mktemp)
trap 'rm -f "$ext" server.csr client.csr' EXIT

# P-256 keys: what Go's TLS and kube-apiserver prefer, and small.
newkey() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

newkey ca.key
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=audittail webhook CA" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
	-out ca.crt

newkey server.key
openssl req -new -key server.key -subj "/CN=$svc" -out server.csr
printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
	"extendedKeyUsage=serverAuth" \
	"subjectAltName=IP:$ip,IP:127.0.0.1,DNS:$svc,DNS:$svc.cluster.local" >"$ext"
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
	-days $days -extfile "$ext" -out server.crt

newkey client.key
openssl req -new -key client.key -subj "/CN=kube-apiserver-audit-webhook" -out client.csr
printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
	"extendedKeyUsage=clientAuth" >"$ext"
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
	-days $days -extfile "$ext" -out client.crt

openssl rand -hex 32 >token
rm -f ca.srl
echo "wrote ca.crt ca.key server.crt server.key client.crt client.key token in $(pwd)"
