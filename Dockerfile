# Multi-stage: build a static binary, ship it on distroless as a non-root user.
# Base images are pinned by digest (the tag is for people): a rebuild gets the
# same bytes, and a moved tag cannot change what ships. Update the digests
# deliberately (`docker buildx imagetools inspect golang:1.26`, or Renovate).
FROM golang:1.26@sha256:595c7847cff97c9a9e76f015083c481d26078f961c9c8dca3923132f51fe12f1 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
COPY webhook/ webhook/
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/manager ./cmd/manager

FROM gcr.io/distroless/static:nonroot@sha256:f7f8f729987ad0fdf6b05eeeae94b26e6a0f613bdf46feea7fc40f7bd72953e6
WORKDIR /
LABEL org.opencontainers.image.title="upload-operator" \
      org.opencontainers.image.description="Streams large uploads into S3 and finalizes them into a PostgreSQL catalog" \
      org.opencontainers.image.source="https://github.com/mocs-dev/upload-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/manager /manager
USER 65532:65532
EXPOSE 8080 8081 8082
ENTRYPOINT ["/manager"]
