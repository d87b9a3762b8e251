package runtime

// capWriter keeps at most limit bytes of what is written to it and drops
// the rest, remembering that it did. Writes never fail, so a guest that
// prints too much is truncated rather than crashed.
type capWriter struct {
	buf       []byte
	limit     int
	truncated bool
}

func newCapWriter(limit int64) *capWriter { return &capWriter{limit: int(limit)} }

func (w *capWriter) Write(p []byte) (int, error) {
	room := w.limit - len(w.buf)
	if len(p) > room {
		w.truncated = true
		if room > 0 {
			w.buf = append(w.buf, p[:room]...)
		}
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// take returns a copy of what was captured, or nil, and empties w.
func (w *capWriter) take() []byte {
	if len(w.buf) == 0 {
		w.truncated = false
		return nil
	}
	out := append([]byte(nil), w.buf...)
	if w.truncated {
		out = append(out, "\n[output truncated]\n"...)
	}
	w.buf = w.buf[:0]
	w.truncated = false
	return out
}
