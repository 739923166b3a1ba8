#!/usr/bin/env bash
# Builds etcd and kube-apiserver from Go modules into the directory layout
# setup-envtest uses (bin/k8s/<version>-linux-amd64/), once. No prebuilt binary
# can be downloaded on our machines, so envtest and `make dev` use these.
# A cold kube-apiserver build takes ~5 minutes and ~3 GB of memory on 2 cores;
# a present binary is never rebuilt.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
K8S_VERSION=${K8S_VERSION:-1.37.2}
out="$root/bin/k8s/${K8S_VERSION}-$(go env GOOS)-$(go env GOARCH)"
mkdir -p "$out"

build() { # name, tools-module dir, package, extra go build args...
  local name=$1 dir=$2 pkg=$3; shift 3
  if [[ -x "$out/$name" ]]; then return 0; fi
  echo "building $name into $out (first time only)" >&2
  local tmp="$out/.$name.tmp.$$"
  (cd "$root/hack/tools/$dir" && CGO_ENABLED=0 go build -trimpath -o "$tmp" "$@" "$pkg")
  mv -f "$tmp" "$out/$name"   # atomic: an interrupted build leaves no half binary
}

build etcd etcd go.etcd.io/etcd/server/v3

ver="v${K8S_VERSION}"
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $p.gitVersion=$ver -X $p.gitMajor=${K8S_VERSION%%.*}"
  minor=${K8S_VERSION#*.}; minor=${minor%%.*}
  ldflags+=" -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
build kube-apiserver kube k8s.io/kubernetes/cmd/kube-apiserver -ldflags "$ldflags"
# The rest of a node for `make test-cluster` (internal/testenv/localenv/cluster.go):
# kube-controller-manager, kube-scheduler, kubelet and kube-proxy, ~5 more minutes cold.
if [[ -n ${BUILD_CLUSTER:-} ]]; then
  for c in kube-controller-manager kube-scheduler kubelet kube-proxy; do
    build "$c" kube "k8s.io/kubernetes/cmd/$c" -ldflags "$ldflags"
  done
fi
# kubectl only where the machine has none (ours ship 1.32; Debian's is too old).
if [[ -n ${BUILD_KUBECTL:-} ]]; then
  build kubectl kube k8s.io/kubernetes/cmd/kubectl -ldflags "$ldflags"
fi

echo "$out"
