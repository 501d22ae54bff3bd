#!/usr/bin/env bash
# Builds the Go tools the deploy/ checks use, from the Go module proxy, into deploy/local/tools/bin
# (a cache; `make clean` removes it): kubeconform validates deploy/k8s against Kubernetes' schemas.
# Needs Go 1.22+ (`go` on PATH or /usr/local/go/bin/go; on Debian/Ubuntu as root, installed with
# apt-get when neither is there).
set -euo pipefail
cd "$(dirname "$0")"
KUBECONFORM_VERSION=v0.7.0
bin="$PWD/tools/bin"
[ -x "$bin/kubeconform" ] && exit 0

go=$(command -v go || true)
[ -z "$go" ] && [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go
if [ -z "$go" ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "missing: Go 1.22+ (to build kubeconform) — install golang-go" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go
  go=$(command -v go)
fi
mkdir -p "$bin" tools/gopath tools/gocache
echo "building kubeconform $KUBECONFORM_VERSION with $("$go" version)" >&2
GOBIN="$bin" GOPATH="$PWD/tools/gopath" GOCACHE="$PWD/tools/gocache" GOFLAGS=-modcacherw \
  "$go" install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
rm -rf tools/gopath tools/gocache  # the binary is all that is kept
