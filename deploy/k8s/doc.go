// Package k8s holds the tests of the Kubernetes deployment: the kustomize
// base and overlays in this directory, deploy/nats, deploy/otel-collector,
// the Dockerfile and deploy/build-static.sh. It has no code of its own; see
// README.md for the deployment itself.
package k8s
