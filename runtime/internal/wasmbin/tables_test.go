package wasmbin

import (
	"bytes"
	"errors"
	"testing"
)

// A module with one table: funcref, the given limits.
func tableModule(limits ...byte) []byte {
	body := append([]byte{1, 0x70}, limits...)
	return append([]byte{0, 'a', 's', 'm', 1, 0, 0, 0, secTable, byte(len(body))}, body...)
}

func TestCapTables(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want []byte // table section body after capping
		err  error
	}{
		{"no maximum gets min+grow", tableModule(0, 1), []byte{1, 0x70, 1, 1, 11}, nil},
		{"large maximum is lowered", tableModule(1, 2, 0xff, 0xff, 0xff, 0xff, 0x0f), []byte{1, 0x70, 1, 2, 12}, nil},
		{"small maximum is kept", tableModule(1, 2, 5), []byte{1, 0x70, 1, 2, 5}, nil},
		{"table64 unsupported", tableModule(4, 1), nil, ErrUnsupportedInstruction},
		{"truncated", tableModule(1, 2), nil, ErrMalformed},
		{"short header", []byte{0, 'a', 's'}, nil, ErrMalformed},
	}
	for _, c := range cases {
		out, err := CapTables(c.in, 10)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: got %v, want %v", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want := append([]byte{0, 'a', 's', 'm', 1, 0, 0, 0, secTable, byte(len(c.want))}, c.want...)
		if !bytes.Equal(out, want) {
			t.Errorf("%s: got % x, want % x", c.name, out, want)
		}
	}
	// A module without tables comes back unchanged.
	plain := []byte{0, 'a', 's', 'm', 1, 0, 0, 0, 0, 3, 1, 'x', 'y'}
	if out, err := CapTables(plain, 10); err != nil || !bytes.Equal(out, plain) {
		t.Fatalf("plain module: % x, %v", out, err)
	}
}

func FuzzCapTables(f *testing.F) {
	f.Add(tableModule(0, 1))
	f.Add(tableModule(1, 2, 0xff, 0xff, 0xff, 0xff, 0x0f))
	f.Add([]byte{0, 'a', 's', 'm', 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := append([]byte(nil), in...)
		out, err := CapTables(in, MaxTableGrowth)
		if !bytes.Equal(in, orig) {
			t.Fatal("input modified")
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedInstruction) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		again, err := CapTables(out, MaxTableGrowth)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("capping is not idempotent: %v", err)
		}
	})
}
