// Package storage will own the replicated data model: the function
// registry, KV namespaces, content-addressed module blobs and CertMagic
// storage. It is empty until the edge and cluster issues.
package storage
