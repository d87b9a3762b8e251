package wasmbin

import "fmt"

// reader decodes WebAssembly binary primitives from buf. pos is an index
// into buf; base is the absolute offset of buf[0] in the original module so
// that error messages report offsets in the caller's input.
type reader struct {
	buf  []byte
	pos  int
	base int
}

// errorf returns an error wrapping ErrMalformed that reports the absolute
// offset off.
func errorf(off int, format string, args ...any) error {
	return fmt.Errorf("%w: %s at byte offset %d", ErrMalformed, fmt.Sprintf(format, args...), off)
}

// off returns the absolute offset of the next unread byte.
func (r *reader) off() int { return r.base + r.pos }

// remaining returns the number of unread bytes.
func (r *reader) remaining() int { return len(r.buf) - r.pos }

// fail returns an ErrMalformed error at the current offset.
func (r *reader) fail(format string, args ...any) error {
	return errorf(r.off(), format, args...)
}

// byte reads one byte; what names it in the error message.
func (r *reader) byte(what string) (byte, error) {
	if r.pos >= len(r.buf) {
		return 0, r.fail("unexpected end of input reading %s", what)
	}
	b := r.buf[r.pos]
	r.pos++
	return b, nil
}

// bytes returns the next n bytes without copying them.
func (r *reader) bytes(n int, what string) ([]byte, error) {
	if n < 0 || n > r.remaining() {
		return nil, r.fail("%s needs %d bytes but only %d remain", what, n, r.remaining())
	}
	b := r.buf[r.pos : r.pos+n]
	r.pos += n
	return b, nil
}

// u32 reads an unsigned LEB128 value of at most 32 bits (at most 5 bytes).
func (r *reader) u32(what string) (uint32, error) {
	v, err := r.leb(what, 32, false)
	return uint32(v), err
}

// u64 reads an unsigned LEB128 value of at most 64 bits (at most 10 bytes).
func (r *reader) u64(what string) (uint64, error) {
	return r.leb(what, 64, false)
}

// s32 skips a signed LEB128 value of at most 32 bits.
func (r *reader) s32(what string) error {
	_, err := r.leb(what, 32, true)
	return err
}

// s64 skips a signed LEB128 value of at most 64 bits.
func (r *reader) s64(what string) error {
	_, err := r.leb(what, 64, true)
	return err
}

// leb decodes a LEB128 value of the given bit width. It rejects encodings
// longer than ceil(bits/7) bytes and final bytes whose unused bits are not
// zero (unsigned) or a sign extension (signed), as the spec requires. The
// signed result is returned as its two's complement bit pattern.
func (r *reader) leb(what string, bits uint, signed bool) (uint64, error) {
	start := r.off()
	maxBytes := int((bits + 6) / 7)
	var v uint64
	for i := 0; i < maxBytes; i++ {
		b, err := r.byte(what)
		if err != nil {
			return 0, err
		}
		shift := uint(7 * i)
		v |= uint64(b&0x7f) << shift
		if b&0x80 == 0 {
			if i == maxBytes-1 {
				// used is the number of payload bits of b that fit in bits.
				used := bits - shift
				unused := b &^ byte(1<<used-1) & 0x7f
				if signed {
					if b&(1<<(used-1)) != 0 {
						if unused != 0x7f&^byte(1<<used-1) {
							return 0, errorf(start, "%s: signed LEB128 overflows %d bits", what, bits)
						}
					} else if unused != 0 {
						return 0, errorf(start, "%s: signed LEB128 overflows %d bits", what, bits)
					}
				} else if unused != 0 {
					return 0, errorf(start, "%s: LEB128 overflows %d bits", what, bits)
				}
			}
			if signed && shift+7 < 64 && b&0x40 != 0 {
				v |= ^uint64(0) << (shift + 7)
			}
			return v, nil
		}
	}
	return 0, errorf(start, "%s: LEB128 longer than %d bytes", what, maxBytes)
}
