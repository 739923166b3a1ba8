// A module of its own so that go-containerregistry stays out of the
// operator's go.mod: only `make image` needs it.
module github.com/mocs-dev/upload-operator/hack/image

go 1.26.7

require github.com/google/go-containerregistry v0.22.1

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
	golang.org/x/sync v0.22.0 // indirect
)
