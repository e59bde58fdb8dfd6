# syntax=docker/dockerfile:1
#
# The billing worker as a static binary in a distroless, non-root image,
# with the operations console beside it (/console).
#
#   docker build -t billing-worker .
#   docker buildx build --platform linux/amd64,linux/arm64 -t <registry>/billing-worker:<tag> --push .
#
# The Go version matches the go directive of go.mod (a test in deploy/k8s
# keeps them equal). The binary is built by deploy/build-static.sh, the same
# script CI runs, so CI proves that this image's build compiles.

FROM --platform=$BUILDPLATFORM golang:1.26.8 AS build
WORKDIR /src
# Modules first, so that source changes reuse the download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH sh deploy/build-static.sh /out/worker

FROM gcr.io/distroless/static-debian12:nonroot
# The operations console (cmd/console), for deploy/k8s/components/console.
COPY --from=build /out/console /console
COPY --from=build /out/worker /worker
# The image's nonroot user (uid and gid 65532); the Kubernetes manifests set
# runAsUser 65532 so that runAsNonRoot can be verified.
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/worker"]
