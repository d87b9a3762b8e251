// Package dockertest runs gojinn-node as a three-container cluster on a
// Docker engine, from the image deploy/docker/Dockerfile builds (make
// docker-test); it has tests only.
package dockertest
