# upload-operator — `make dev` runs everything locally, `make test` runs every test.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

# Pinned tool versions (installed into bin/ with `go install`, never downloaded as binaries).
CONTROLLER_GEN_VERSION ?= v0.23.0
KUBEBUILDER_VERSION    ?= v4.16.0
VERSITYGW_VERSION      ?= v1.8.0
GOLANGCI_LINT_VERSION  ?= v2.15.0
TUSD_VERSION           ?= v2.9.1
K8S_VERSION            ?= 1.37.2

BIN        := $(CURDIR)/bin
K8S_ASSETS := $(BIN)/k8s/$(K8S_VERSION)-linux-amd64
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
VERSITYGW      := $(BIN)/versitygw-$(VERSITYGW_VERSION)
KUBEBUILDER    := $(BIN)/kubebuilder-$(KUBEBUILDER_VERSION)
GOLANGCI_LINT  := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
TUSD           := $(BIN)/tusd-$(TUSD_VERSION)

export KUBEBUILDER_ASSETS := $(K8S_ASSETS)
export VERSITYGW_BIN      := $(VERSITYGW)

TEST_TIMEOUT ?= 30m
# Inputs per fuzz target in `make test` (hack/fuzz.sh).
FUZZ_COUNT   ?= 20000
SOAK_DURATION ?= 10m
SEED         ?= 1

.PHONY: all
all: build

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRD, RBAC and deepcopy code from the kubebuilder markers.
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd rbac:roleName=manager-role paths=./api/... paths=./controllers/... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: fmt vet
fmt:
	gofmt -l -w $$(git ls-files '*.go')
vet:
	go vet ./...

.PHONY: build
build: ## Build the manager and dev environment binaries.
	go build -o $(BIN)/manager ./cmd/manager
	go build -o $(BIN)/devenv ./cmd/devenv
	go build -o $(BIN)/mocupload ./cmd/mocupload

.PHONY: tools
tools: $(CONTROLLER_GEN) $(VERSITYGW) k8s ## Install every pinned tool into bin/.

.PHONY: k8s
k8s: ## Build etcd and kube-apiserver from Go modules into bin/k8s/ (once).
	K8S_VERSION=$(K8S_VERSION) hack/build-k8s.sh >/dev/null

$(CONTROLLER_GEN):
	GOBIN=$(BIN)/.gobin go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(BIN)/.gobin/controller-gen $@

$(VERSITYGW):
	GOBIN=$(BIN)/.gobin go install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)
	mv $(BIN)/.gobin/versitygw $@

# tusd, the tus reference server, is the peer `make bench` compares against
# (its S3 store on the same versitygw); only the benchmark needs it.
$(TUSD):
	GOBIN=$(BIN)/.gobin go install github.com/tus/tusd/v2/cmd/tusd@$(TUSD_VERSION)
	mv $(BIN)/.gobin/tusd $@

$(GOLANGCI_LINT):
	GOBIN=$(BIN)/.gobin go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/.gobin/golangci-lint $@

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (.golangci.yml): vet, staticcheck, errcheck, gosec, … .
	$(GOLANGCI_LINT) run ./...

$(KUBEBUILDER):
	GOBIN=$(BIN)/.gobin go install sigs.k8s.io/kubebuilder/v4@$(KUBEBUILDER_VERSION)
	mv $(BIN)/.gobin/kubebuilder $@

.PHONY: dev
dev: tools build ## Run the operator with a local control plane, PostgreSQL, Redis and S3 (Ctrl-C stops all).
	hack/ensure-services.sh
	$(BIN)/devenv

##@ Tests

.PHONY: test
test: tools ## Run every test (unit, envtest, integration) against real services.
	hack/ensure-services.sh
	go vet ./...
	go vet -tags failpoints ./...
	go test -race -tags failpoints -count=1 -timeout $(TEST_TIMEOUT) ./...
	go test -race -count=1 ./internal/failpoint # the production build: no failpoints
	hack/fuzz.sh $(FUZZ_COUNT)
	hack/model/check.sh
	go run ./cmd/soak -short -seed 1

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
model: ## Model-check the finalize protocol (hack/model/finalize.pml) with spin, exhaustively within its bounds.
	hack/model/check.sh

.PHONY: verify-generated
verify-generated: manifests ## Fail when generated code or manifests differ from what is committed.
	git diff --exit-code -- api config

.PHONY: help
help:
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

.PHONY: evidence
evidence: build ## Run the story's HTTP plan against a running `make dev`; rewrite docs/evidence/STORY-01726.md.
	go run ./cmd/evidence

.PHONY: bench
bench: tools $(TUSD) ## Measure the operator against direct S3; rewrite docs/benchmarks.md and docs/benchmarks.png.
	hack/ensure-services.sh
	go run ./cmd/bench
