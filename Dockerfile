# syntax=docker/dockerfile:1
#
# audittail image: a static binary on distroless (no shell, no package
# manager, CA certificates and tzdata only).
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     -t ghcr.io/audittail/audittail:dev .
#
# `make image` runs the same command. CI does not build the image (no Docker
# engine there); `make build` builds the same binary with the same flags.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/usr/local/bin/audittail ./cmd/audittail \
 && mkdir -p /out/var/lib/audittail /out/etc/audittail

# Not the :nonroot variant: the agent runs as uid 0 so that it can read
# kube-apiserver's audit log (root-owned, mode 0600) as its owner, with every
# capability dropped by the DaemonSet (manifests/base/daemonset.yaml) or the
# systemd unit (examples/systemd/audittail.service). A non-root uid would
# need CAP_DAC_READ_SEARCH, which reads any file on the node and which a
# non-root process cannot even receive under no_new_privs. With plain
# `docker run`, drop the capabilities yourself:
#   docker run --read-only --cap-drop=ALL --security-opt=no-new-privileges \
#     -v /var/log/kubernetes/audit:/var/log/kubernetes/audit:ro \
#     -v /var/lib/audittail:/var/lib/audittail \
#     -v /etc/audittail:/etc/audittail:ro ghcr.io/audittail/audittail
# See docs/deployment.md. Pin the base by digest in your own builds.
FROM gcr.io/distroless/static-debian12
ARG VERSION=dev
LABEL org.opencontainers.image.title="audittail" \
      org.opencontainers.image.description="Ships the Kubernetes API server's audit log at least once" \
      org.opencontainers.image.source="https://github.com/audittail/audittail" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/ /
USER 0:0
# The checkpoint lives in /var/lib/audittail (mount a host directory there,
# or a restart starts afresh); the config is read from /etc/audittail.
WORKDIR /var/lib/audittail
ENTRYPOINT ["/usr/local/bin/audittail"]
CMD ["run", "--config", "/etc/audittail/config.yaml"]
