package edge

import (
	"bytes"
	"log/slog"
	"net/url"
	"strings"
	"testing"
)

// redactQuery drops queries from every URL-bearing attribute, however it
// is logged, and leaves the rest of the record alone.
func TestRedactQuery(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(redactQuery{slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})})
	u, _ := url.Parse("https://user:pw@example.com/a?token=S1#frag")
	log.With("request_uri", "/w?token=S2").WithGroup("g").Debug("handling request",
		"uri", "/p?token=S3", "URL", u, "value", *u, slog.Group("inner", "url", "/q?token=S4"),
		"method", "GET", "note", "keeps ?this")
	out := buf.String()
	for _, secret := range []string{"S1", "S2", "S3", "S4", "pw", "frag"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q reached the log: %s", secret, out)
		}
	}
	for _, kept := range []string{`"request_uri":"/w"`, `"uri":"/p"`, `"/q"`, "example.com/a", `"method":"GET"`, "keeps ?this"} {
		if !strings.Contains(out, kept) {
			t.Errorf("%s is missing: %s", kept, out)
		}
	}
}
