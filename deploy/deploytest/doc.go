// Package deploytest checks Herald's deployment files against the code they
// deploy, without a container engine or a cluster: the Dockerfile, the
// top-level docker-compose.yml (loaded with compose-go, the loader Docker
// Compose uses), the Prometheus and proxy configuration of the compose
// stack, and the Kubernetes manifests (built with kustomize's own API and
// decoded strictly into the Kubernetes and KEDA types). Every HERALD_*
// variable these files set is checked against the Config of the service
// that reads it, so a renamed or removed variable fails here rather than
// being ignored in production.
//
// It is its own module so that compose-go, kustomize and the Kubernetes
// API types stay out of the services' dependencies.
package deploytest
