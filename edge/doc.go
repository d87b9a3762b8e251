// Package edge turns HTTP requests into function invocations: it converts
// between net/http and the guest protocol and maps invocation errors to
// HTTP answers. Listeners, TLS and routing arrive with the edge issue.
package edge
