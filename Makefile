# upload-operator — `make dev` runs everything locally, `make test` runs every test.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

# Pinned tool versions (installed into bin/ with `go install`, never downloaded as binaries).
CONTROLLER_GEN_VERSION ?= v0.23.0
KUBEBUILDER_VERSION    ?= v4.16.0
VERSITYGW_VERSION      ?= v1.8.0
GOLANGCI_LINT_VERSION  ?= v2.15.0
TUSD_VERSION           ?= v2.9.1
KUSTOMIZE_VERSION      ?= v5.8.2
HELM_VERSION           ?= v4.3.2
K8S_VERSION            ?= 1.37.2

BIN        := $(CURDIR)/bin
K8S_ASSETS := $(BIN)/k8s/$(K8S_VERSION)-linux-amd64
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
VERSITYGW      := $(BIN)/versitygw-$(VERSITYGW_VERSION)
KUBEBUILDER    := $(BIN)/kubebuilder-$(KUBEBUILDER_VERSION)
GOLANGCI_LINT  := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
TUSD           := $(BIN)/tusd-$(TUSD_VERSION)
HELM           := $(BIN)/helm-$(HELM_VERSION)
KUSTOMIZE      := $(BIN)/kustomize-$(KUSTOMIZE_VERSION)
KUBECTL        ?= kubectl
CONTAINER_TOOL ?= docker

# The operator's image. Defaults to the one config/operator pins, so a plain
# `make deploy` installs what `kubectl apply -k config/default` would.
IMG ?= $(shell awk '/newName:/ {n=$$2} /newTag:/ {t=$$2} END {print n ":" t}' config/operator/kustomization.yaml)
# Where `make build-installer` writes the single-file install (not committed:
# it is a release artifact, rendered for the IMG being released).
INSTALLER ?= dist/install.yaml

export KUBEBUILDER_ASSETS := $(K8S_ASSETS)
export VERSITYGW_BIN      := $(VERSITYGW)
export HELM_BIN           := $(HELM)

TEST_TIMEOUT ?= 30m
# Inputs per fuzz target in `make test` (hack/fuzz.sh).
FUZZ_COUNT   ?= 20000
SOAK_DURATION ?= 10m
SEED         ?= 1

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target> [VAR=value]\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

# The Helm chart ships copies of the CRD, the alert rules and the dashboard, which its tests
# (test/e2e/helm_test.go) hold byte for byte to config/'s.
.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD (config/crd) and the manager's ClusterRole (config/rbac) from the markers.
	$(CONTROLLER_GEN) crd rbac:roleName=manager-role paths=./api/... paths=./controllers/... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	cp config/crd/bases/*.yaml dist/chart/crds/
	cp config/prometheus/alerts.yaml dist/chart/files/alerts.yaml
	cp config/grafana/upload-operator-dashboard.json dist/chart/files/upload-operator-dashboard.json

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate the deepcopy code (api/…/zz_generated.deepcopy.go).
	$(CONTROLLER_GEN) object paths=./api/...

.PHONY: fmt vet
fmt: ## Format every Go file with gofmt.
	gofmt -l -w $$(git ls-files '*.go')
vet: ## Run go vet.
	go vet ./...

# The manager needs DATABASE_URL, REDIS_URL and S3_BUCKET (with S3_ENDPOINT and
# AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for a store other than AWS); the rest
# of README's Configuration has defaults. The CRD must be installed.
.PHONY: run
run: ## Run the manager from source against the current kubeconfig (needs DATABASE_URL, REDIS_URL, S3_BUCKET; `make install` first).
	go run ./cmd/manager

.PHONY: build
build: ## Build the manager and dev environment binaries.
	go build -o $(BIN)/manager ./cmd/manager
	go build -o $(BIN)/devenv ./cmd/devenv
	go build -o $(BIN)/mocupload ./cmd/mocupload

.PHONY: tools
tools: $(CONTROLLER_GEN) $(VERSITYGW) $(KUSTOMIZE) $(HELM) k8s ## Install every pinned tool into bin/.

.PHONY: k8s
k8s: ## Build etcd, kube-apiserver and a node's kube-controller-manager, kube-scheduler and kubelet from Go modules into bin/k8s/ (once).
	BUILD_CLUSTER=1 K8S_VERSION=$(K8S_VERSION) hack/build-k8s.sh >/dev/null

$(CONTROLLER_GEN):
	GOBIN=$(BIN)/.gobin go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(BIN)/.gobin/controller-gen $@

$(KUSTOMIZE):
	GOBIN=$(BIN)/.gobin go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(BIN)/.gobin/kustomize $@

$(VERSITYGW):
	GOBIN=$(BIN)/.gobin go install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)
	mv $(BIN)/.gobin/versitygw $@

# helm renders and lints the chart in dist/chart (test/e2e/helm_test.go).
$(HELM):
	GOBIN=$(BIN)/.gobin go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	mv $(BIN)/.gobin/helm $@

# tusd, the tus reference server, is the peer `make bench` compares against
# (its S3 store on the same versitygw); only the benchmark needs it.
$(TUSD):
	GOBIN=$(BIN)/.gobin go install github.com/tus/tusd/v2/cmd/tusd@$(TUSD_VERSION)
	mv $(BIN)/.gobin/tusd $@

$(GOLANGCI_LINT):
	GOBIN=$(BIN)/.gobin go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/.gobin/golangci-lint $@

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (.golangci.yml): vet, staticcheck, errcheck, gosec, …; refuse tracked binaries and files over 2 MiB.
	hack/check-tracked-files.sh --self-test
	$(GOLANGCI_LINT) run ./...

$(KUBEBUILDER):
	GOBIN=$(BIN)/.gobin go install sigs.k8s.io/kubebuilder/v4@$(KUBEBUILDER_VERSION)
	mv $(BIN)/.gobin/kubebuilder $@

.PHONY: dev
dev: tools build ## Run the operator with a local control plane, PostgreSQL, Redis and S3 (Ctrl-C stops all).
	hack/ensure-services.sh
	$(BIN)/devenv

##@ Build

# Both need a container engine with a running daemon (CONTAINER_TOOL=podman works too).
.PHONY: docker-build docker-push
# The image without a container engine or registry: the static binary and a
# base assembled here (Debian's ca-certificates) as an OCI archive, for
# `ctr images import` or `skopeo copy oci-archive:…`. hack/image is a module
# of its own (go-containerregistry stays out of the operator's go.mod).
IMAGE_ARCHIVE ?= $(BIN)/upload-operator-image.tar
.PHONY: image
image: ## Build the manager's OCI image IMG without pulling anything, as an archive: IMAGE_ARCHIVE (bin/upload-operator-image.tar).
	@mkdir -p $(BIN)
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags="-s -w" -o $(BIN)/manager-linux-amd64 ./cmd/manager
	cd hack/image && go run . -binary $(BIN)/manager-linux-amd64 -ref $(IMG) -out $(IMAGE_ARCHIVE)

docker-build: ## Build the operator's image IMG with CONTAINER_TOOL (docker; needs a running engine).
	$(CONTAINER_TOOL) build -t $(IMG) .
docker-push: ## Push the image IMG with CONTAINER_TOOL.
	$(CONTAINER_TOOL) push $(IMG)

# config/default rendered with IMG from a throw-away copy of config/, so that
# `kustomize edit set image` never writes to the work tree.
RENDER_DEFAULT = tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && cp -R config "$$tmp/" && \
	(cd "$$tmp/config/operator" && $(KUSTOMIZE) edit set image upload-operator=$(IMG)) && \
	$(KUSTOMIZE) build "$$tmp/config/default"

.PHONY: build-installer
build-installer: $(KUSTOMIZE) ## Render config/default with IMG into one file, INSTALLER (dist/install.yaml).
	mkdir -p $(dir $(INSTALLER))
	$(RENDER_DEFAULT) > $(INSTALLER).tmp
	mv $(INSTALLER).tmp $(INSTALLER)

##@ Deployment

# Server-side apply keeps no last-applied copy in an annotation (which a CRD's
# schema can outgrow); --force-conflicts: these targets own what they apply, as
# a plain apply would.
.PHONY: install uninstall deploy undeploy
install: ## Install the CRD into the cluster of the current kubeconfig (KUBECTL).
	$(KUBECTL) apply --server-side --force-conflicts -k config/crd
uninstall: ## Delete the CRD, and with it every UploadSession, from the cluster.
	$(KUBECTL) delete --ignore-not-found -k config/crd
deploy: $(KUSTOMIZE) ## Deploy config/default with the image IMG (create the upload-operator-env Secret too: docs/operations.md).
	$(RENDER_DEFAULT) | $(KUBECTL) apply --server-side --force-conflicts -f -
undeploy: $(KUSTOMIZE) ## Delete what `make deploy` created: the namespace (its Secret too), RBAC, the CRD and every session.
	@# Sessions first, while the operator still runs to release their
	@# finalizers: deleted together with it, they (and the namespace and the
	@# CRD) would wait for ever (make test-cluster found that).
	if $(KUBECTL) get crd uploadsessions.uploads.mocs.dev >/dev/null 2>&1; then \
	  $(KUBECTL) delete uploadsessions.uploads.mocs.dev --all --all-namespaces --timeout=5m; fi
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found -f -

##@ Tests

# `go vet` is not run here: `make lint` (golangci-lint, build tag failpoints)
# runs govet, and .ci/run runs both.
.PHONY: test
test: tools ## Run every test (unit, envtest, end-to-end, fuzz, model, soak, noisy neighbour) against real services: what CI runs.
	hack/ensure-services.sh
	go test -race -tags failpoints -count=1 -timeout $(TEST_TIMEOUT) ./...
	go test -race -count=1 ./internal/failpoint # the production build: no failpoints
	hack/fuzz.sh $(FUZZ_COUNT)
	hack/model/check.sh
	go run ./cmd/soak -short -seed 1
	go run ./cmd/abuse -quick

# The inner loop: every package but the end-to-end suite, under the race
# detector, fuzz targets on their seeds only; no model check, no soak.
.PHONY: test-fast
test-fast: $(VERSITYGW) k8s ## Run the unit and envtest packages with the race detector (no e2e, fuzzing, model or soak; a few minutes).
	hack/ensure-services.sh
	go test -race -tags failpoints -count=1 -timeout $(TEST_TIMEOUT) $$(go list ./... | grep -v -e /test/e2e -e /test/cluster)

# The operator as users run it: its image (make image) as Pods of `make deploy`
# and of the Helm chart on a single-node cluster in a network namespace of the
# test's own (kubelet, kube-proxy, containerd, runc, Debian's CNI plugins).
# Root only. make test runs it too.
.PHONY: test-cluster
test-cluster: tools ## Install the image with make deploy and Helm on a single-node cluster here: Pods, leader kill, rollouts under uploads (root; ~3 min warm).
	hack/ensure-services.sh
	go test -count=1 -timeout 15m -v ./test/cluster

.PHONY: abuse
abuse: tools ## Noisy-neighbour run: what a victim tenant gets while another attacks; rewrites docs/security.md's table and docs/abuse.svg.
	hack/ensure-services.sh
	go run ./cmd/abuse

.PHONY: soak
soak: tools ## Chaos soak (SOAK_DURATION, SEED): faults under load, history checked; records docs/reliability.md.
	hack/ensure-services.sh
	go run ./cmd/soak -duration $(SOAK_DURATION) -seed $(SEED) -record

.PHONY: cover
cover: tools ## Coverage of unit, envtest and end-to-end tests together, per package (bin/cover/).
	hack/ensure-services.sh
	hack/cover.sh

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZ_COUNT inputs (make test runs 20000).
	hack/fuzz.sh $(FUZZ_COUNT)

.PHONY: model
model: ## Model-check the finalize protocol (hack/model/*.pml) with spin: exhaustive runs, vacuity runs, mutants (cached).
	hack/model/check.sh

.PHONY: verify-generated
verify-generated: generate manifests ## Fail when generated code or manifests differ from what is committed.
	git diff --exit-code -- api config dist/chart/crds dist/chart/files

.PHONY: evidence
evidence: build ## Run the story's HTTP plan against a running `make dev`; rewrite docs/evidence/STORY-01726.md.
	go run ./cmd/evidence

.PHONY: bench
bench: tools $(TUSD) ## Measure the operator against direct S3; rewrite docs/benchmarks.md and docs/benchmarks.png.
	hack/ensure-services.sh
	go run ./cmd/bench
