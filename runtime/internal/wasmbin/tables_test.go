package wasmbin

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
)

// A module with one table: funcref, the given limits.
func tableModule(limits ...byte) []byte {
	body := append([]byte{1, 0x70}, limits...)
	return append([]byte{0, 'a', 's', 'm', 1, 0, 0, 0, secTable, byte(len(body))}, body...)
}

// tbl encodes a funcref table type with the given minimum and, when one is
// given, maximum.
func tbl(min uint32, max ...uint32) []byte {
	if len(max) == 0 {
		return cat(fref, 0x00, uleb(uint64(min)))
	}
	return cat(fref, 0x01, uleb(uint64(min)), uleb(uint64(max[0])))
}

// nTables returns n table types of tbl(min).
func nTables(n int, min uint32) [][]byte {
	ts := make([][]byte, n)
	for i := range ts {
		ts[i] = tbl(min)
	}
	return ts
}

// tableLimits decodes the table section of a CapTables output.
func tableLimits(t *testing.T, wasm []byte) []tableType {
	t.Helper()
	m, err := parse(wasm)
	if err != nil {
		t.Fatal(err)
	}
	if !m.hasTable {
		return nil
	}
	tables, err := readTables(wasm[m.tableBody:m.tableEnd], m.tableBody)
	if err != nil {
		t.Fatal(err)
	}
	return tables
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
		{"maximum below minimum", tableModule(1, 2, 1), nil, ErrMalformed},
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

// The tables of a module share one growth budget: however many tables it
// has, their maxima add up to at most their minima plus the budget, and
// at most MaxTableEntries. The budget used to be per table, so 10,000
// tables could each grow by 100,000 entries: 8 GB of references wazero
// allocated outside any limit, and the node died.
func TestCapTablesSharesOneBudget(t *testing.T) {
	cases := []struct {
		name   string
		tables [][]byte
		grow   uint32
		want   []uint32 // the maxima
	}{
		{"four tables without maxima split it", nTables(4, 2), 100, []uint32{27, 27, 27, 27}},
		{"a small maximum is kept, the others share the rest", [][]byte{tbl(0), tbl(0, 5), tbl(0)}, 100, []uint32{47, 5, 48}},
		{"maxima that fit are kept", [][]byte{tbl(1, 10), tbl(0, 20), tbl(3, 3)}, 100, []uint32{10, 20, 3}},
		{"large maxima are lowered", [][]byte{tbl(0, 1000), tbl(0, 1000)}, 100, []uint32{50, 50}},
		{"no room left under MaxTableEntries", [][]byte{tbl(MaxTableEntries - 10), tbl(0), tbl(0, 2)}, 100, []uint32{MaxTableEntries - 6, 4, 2}},
		{"the most tables", nTables(MaxTables, 0), MaxTableGrowth, nil},
		{"the most tables at the most entries", nTables(MaxTables, MaxTableEntries/MaxTables), math.MaxUint32, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := wasmModule(sec(secTable, vec(c.tables...)))
			if err := CheckLimits(in); err != nil {
				t.Fatal(err)
			}
			out, err := CapTables(in, c.grow)
			if err != nil {
				t.Fatal(err)
			}
			var mins, maxs uint64
			var got []uint32
			for _, tt := range tableLimits(t, out) {
				mins, maxs = mins+uint64(tt.min), maxs+tt.max
				got = append(got, uint32(tt.max))
			}
			if maxs > mins+uint64(c.grow) || maxs > MaxTableEntries {
				t.Fatalf("maxima add up to %d: more than the minima (%d) plus %d, or than %d", maxs, mins, c.grow, MaxTableEntries)
			}
			if c.want != nil && !equalU32(got, c.want) {
				t.Fatalf("maxima %v, want %v", got, c.want)
			}
			again, err := CapTables(out, c.grow)
			if err != nil || !bytes.Equal(again, out) {
				t.Fatalf("capping is not idempotent: %v", err)
			}
			n, err := TableBytes(out)
			if err != nil || n != maxs*TableEntryBytes {
				t.Fatalf("TableBytes = %d, %v; want %d", n, err, maxs*TableEntryBytes)
			}
		})
	}
}

func equalU32(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A module may have at most MaxTables tables, imported ones included, and
// CapTables refuses imported tables outright.
func TestTableCountLimit(t *testing.T) {
	imported := sec(secImport, vec(imp("env", "t", 1, tbl(0))))
	for _, c := range []struct {
		name string
		wasm []byte
		err  error // from CheckLimits
	}{
		{"64 tables", wasmModule(sec(secTable, vec(nTables(MaxTables, 0)...))), nil},
		{"65 tables", wasmModule(sec(secTable, vec(nTables(MaxTables+1, 0)...))), ErrLimit},
		{"an imported table and 64", wasmModule(imported, sec(secTable, vec(nTables(MaxTables, 0)...))), ErrLimit},
		{"10,000 tables", wasmModule(sec(secTable, vec(nTables(10_000, 0)...))), ErrLimit},
	} {
		err := CheckLimits(c.wasm)
		if !errors.Is(err, c.err) || (err == nil) != (c.err == nil) {
			t.Errorf("%s: CheckLimits says %v, want %v", c.name, err, c.err)
		}
		if c.err != nil {
			if _, err := CapTables(c.wasm, MaxTableGrowth); !errors.Is(err, ErrLimit) {
				t.Errorf("%s: CapTables says %v, want ErrLimit", c.name, err)
			}
		}
	}
	_, err := CapTables(wasmModule(imported), MaxTableGrowth)
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "imports a table") {
		t.Fatalf("imported table: %v", err)
	}
}

// TableBytes counts every table at its maximum and every passive element
// segment, which wazero copies into each instance; active and declarative
// segments cost an instance nothing of their own.
func TestTableBytes(t *testing.T) {
	tVoid := functype(nil, nil)
	funcs := sec(3, vec([]byte{0}))
	code := sec(secCode, vec(body()))
	elems := sec(secElement, vec(
		cat(0x00, i32c(0), opEnd, vec([]byte{0}, []byte{0}, []byte{0})),                            // active: 3
		cat(0x01, 0x00, vec([]byte{0}, []byte{0}, []byte{0}, []byte{0})),                           // passive: 4
		cat(0x03, 0x00, vec([]byte{0})),                                                            // declarative: 1
		cat(0x05, fref, vec(cat(0xd2, 0x00, opEnd), cat(0xd0, fref, opEnd))),                       // passive expressions: 2
		cat(0x06, 0x01, i32c(0), opEnd, fref, vec(cat(0xd2, 0x00, opEnd), cat(0xd2, 0x00, opEnd))), // active on table 1: 2
	))
	wasm := wasmModule(sec(1, vec(tVoid)), funcs, sec(secTable, vec(tbl(3, 10), tbl(2, 2))), elems, code)
	if err := CheckLimits(wasm); err != nil {
		t.Fatal(err)
	}
	if err := compiles(context.Background(), wazero.NewRuntime(context.Background()), wasm); err != nil {
		t.Fatalf("the test module does not compile: %v", err)
	}
	n, err := TableBytes(wasm)
	if want := uint64(10+2+4+2) * TableEntryBytes; err != nil || n != want {
		t.Fatalf("TableBytes = %d, %v; want %d", n, err, want)
	}
	if n, err := TableBytes(wasmModule()); err != nil || n != 0 {
		t.Fatalf("no tables: %d, %v", n, err)
	}
	if _, err := TableBytes(wasmModule(sec(secTable, vec(tbl(1))))); !errors.Is(err, ErrLimit) {
		t.Fatalf("a table without a maximum: %v, want ErrLimit", err)
	}
	if _, err := TableBytes(wasmModule(sec(secImport, vec(imp("env", "t", 1, tbl(0, 1)))))); !errors.Is(err, ErrLimit) {
		t.Fatalf("an imported table: %v, want ErrLimit", err)
	}
}

// wazero keeps to the capped maxima: a guest that asks to grow each of
// MaxTables tables by far more than the budget ends with tables adding up
// to the budget, however it goes about it (table.grow in the start
// function included).
func TestCappedTablesStopGrowingInWazero(t *testing.T) {
	const n = MaxTables
	var grow, size []byte
	for i := range n {
		for _, delta := range []int32{math.MaxInt32, 1 << 20, MaxTableGrowth, MaxTableGrowth / n, 1} {
			grow = cat(grow, 0xd0, fref, i32c(delta), 0xfc, 15, uleb(uint64(i)), 0x1a) // table.grow; drop
		}
		size = cat(size, 0xfc, 16, uleb(uint64(i)), 0x6a) // table.size; i32.add
	}
	wasm := wasmModule(
		sec(1, vec(functype(nil, nil), functype(nil, []byte{i32}))),
		sec(3, vec([]byte{0}, []byte{1})),
		sec(secTable, vec(nTables(n, 1)...)),
		sec(secExport, vec(export("size", 0, 1))),
		sec(secStart, 0),
		sec(secCode, vec(body(grow), body(i32c(0), size))),
	)
	if err := CheckLimits(wasm); err != nil {
		t.Fatal(err)
	}
	capped, err := CapTables(wasm, MaxTableGrowth)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	mod, err := r.Instantiate(ctx, capped)
	if err != nil {
		t.Fatal(err)
	}
	res, err := mod.ExportedFunction("size").Call(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if total := res[0]; total > n+MaxTableGrowth || total < n+MaxTableGrowth-n {
		t.Fatalf("the tables have %d entries in all after growing; the budget is %d + %d", total, n, MaxTableGrowth)
	}
}

func FuzzCapTables(f *testing.F) {
	f.Add(tableModule(0, 1))
	f.Add(tableModule(1, 2, 0xff, 0xff, 0xff, 0xff, 0x0f))
	f.Add([]byte{0, 'a', 's', 'm', 1, 0, 0, 0})
	f.Add(wasmModule(sec(secTable, vec(tbl(0), tbl(3, 5), tbl(7), tbl(1, 200000)))))
	f.Add(wasmModule(sec(secImport, vec(imp("env", "t", 1, tbl(0)))), sec(secTable, vec(tbl(1)))))
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := append([]byte(nil), in...)
		out, err := CapTables(in, MaxTableGrowth)
		if !bytes.Equal(in, orig) {
			t.Fatal("input modified")
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedInstruction) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrLimit) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		again, err := CapTables(out, MaxTableGrowth)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("capping is not idempotent: %v", err)
		}
		var mins, maxs uint64
		for _, tt := range tableLimits(t, out) {
			mins, maxs = mins+uint64(tt.min), maxs+tt.max
		}
		if len(tableLimits(t, out)) > MaxTables || maxs > mins+MaxTableGrowth || maxs > MaxTableEntries {
			t.Fatalf("%d tables with maxima adding up to %d (minima %d)", len(tableLimits(t, out)), maxs, mins)
		}
		if n, err := TableBytes(out); err == nil && n < maxs*TableEntryBytes {
			t.Fatalf("TableBytes = %d, less than the tables' %d entries", n, maxs)
		} else if errors.Is(err, ErrLimit) {
			t.Fatalf("TableBytes refuses the output of CapTables: %v", err)
		}
	})
}
