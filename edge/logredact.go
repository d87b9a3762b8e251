package edge

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
)

// redactQuery is a slog.Handler that drops the query from URLs before
// next sees a record: from string attributes whose key names a URI or URL
// ("uri", "url", "RequestURI", ...) and from *url.URL and url.URL values
// (which also lose their password), in groups too. It wraps the logger
// given to quic-go, whose debug line per request carries the request URI:
// queries can hold secrets (tokens, signatures), and the node's log leaves
// them out everywhere (the access log records the path only).
type redactQuery struct{ next slog.Handler }

// Enabled implements slog.Handler.
func (h redactQuery) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (h redactQuery) Handle(ctx context.Context, r slog.Record) error {
	changed := false
	r.Attrs(func(a slog.Attr) bool {
		_, changed = redactAttr(a)
		return !changed
	})
	if !changed {
		return h.next.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		a, _ = redactAttr(a)
		out.AddAttrs(a)
		return true
	})
	return h.next.Handle(ctx, out)
}

// WithAttrs implements slog.Handler.
func (h redactQuery) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i], _ = redactAttr(a)
	}
	return redactQuery{h.next.WithAttrs(clean)}
}

// WithGroup implements slog.Handler.
func (h redactQuery) WithGroup(name string) slog.Handler {
	return redactQuery{h.next.WithGroup(name)}
}

// redactAttr returns a without a URL's query, and whether it changed.
func redactAttr(a slog.Attr) (slog.Attr, bool) {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if k := strings.ToLower(a.Key); strings.Contains(k, "uri") || strings.Contains(k, "url") {
			if s, _, found := strings.Cut(v.String(), "?"); found {
				return slog.String(a.Key, s), true
			}
		}
	case slog.KindGroup:
		group := v.Group()
		var clean []slog.Attr
		for i, g := range group {
			if g2, ok := redactAttr(g); ok {
				if clean == nil {
					clean = append([]slog.Attr(nil), group...)
				}
				clean[i] = g2
			}
		}
		if clean != nil {
			return slog.Attr{Key: a.Key, Value: slog.GroupValue(clean...)}, true
		}
	case slog.KindAny:
		var u url.URL
		switch x := v.Any().(type) {
		case *url.URL:
			if x == nil {
				return a, false
			}
			u = *x
		case url.URL:
			u = x
		default:
			return a, false
		}
		if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
			u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
			return slog.String(a.Key, u.Redacted()), true
		}
	}
	return a, false
}
