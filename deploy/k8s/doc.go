// Package k8s holds the tests of the Kubernetes deployment: the kustomize
// base and overlays in this directory, deploy/nats, deploy/otel-collector,
// the Dockerfile and deploy/build-static.sh. It has no code of its own; see
// README.md for the deployment itself.
//
// It belongs to the module in deploy/ (deploy/go.mod), not the worker's:
// Kubernetes' API types, kustomize and their dependencies stay out of the
// worker's module graph. That module requires the worker's with a replace
// directive (=> ../), so these tests always check this checkout's worker.
// Run them with `cd deploy && go test ./...`; the root `go test ./...` does
// not include them.
package k8s
