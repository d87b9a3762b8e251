package wasmbin

import (
	"math"
	"slices"
)

// The table budget of a module (DESIGN.md, "The table budget"). wazero
// v1.12 keeps a table as a Go slice of 8-byte references, allocated at
// instantiation (the minimum) and at every table.grow (the new size, at
// once), and none of it is linear memory: the engine counts it against the
// function's memory limit itself (TableBytes).
const (
	// MaxTables bounds the tables of a module, imported and defined.
	// Toolchains emit one (the indirect function table); reference types
	// add a few more at most.
	MaxTables = 64

	// MaxTableEntries bounds the sum over a module's tables of their
	// minimum sizes (CheckLimits) and, after CapTables, of their maximum
	// sizes: 80 MB of references per instance.
	MaxTableEntries = 10_000_000

	// MaxTableGrowth is how many entries CapTables lets the tables of a
	// module grow by past their initial sizes, in all.
	MaxTableGrowth = 10_000

	// TableEntryBytes is what wazero v1.12 allocates per table entry and
	// per entry of a passive element segment, for every instance.
	TableEntryBytes = 8
)

const (
	secTable   = 4
	secElement = 9
)

// CapTables returns a copy of the module in which every table has a
// maximum, and the maxima add up to at most the tables' initial sizes plus
// grow entries (and at most MaxTableEntries): the tables share one growth
// budget.
//
// A table without a maximum may be grown at run time by up to 2^32-1
// entries, and wazero v1.12 allocates a table.grow's new size at once: a
// 50-byte guest asking for 2^31 entries makes it allocate 16 GiB and the
// Go runtime dies of a fatal out-of-memory, taking the node with it. A cap
// per table is not enough when a module has many tables, so the budget is
// the module's. It is shared out fairly: a table whose declared maximum
// leaves it less than an equal share keeps its maximum, and the others
// split the rest equally. Go and C guests never grow their tables, so the
// cap costs them nothing; a guest that grows past it sees table.grow
// return -1, as the spec allows. Capping is idempotent.
//
// A module importing a table is refused (ErrLimit): no import can be
// budgeted, and the node provides no tables. Tables with 64-bit limits or
// the typed-reference encoding are reported as ErrUnsupportedInstruction.
// The input is never modified.
func CapTables(wasm []byte, grow uint32) ([]byte, error) {
	m, err := parse(wasm)
	if err != nil {
		return nil, err
	}
	if m.importedTables > 0 {
		return nil, limitf(m.importedTableAt, "the module imports a table; the node provides none, so a module must define its tables")
	}
	out := make([]byte, 0, len(wasm)+16)
	out = append(out, wasm[:8]...)
	r := &reader{buf: wasm, pos: 8}
	for r.remaining() > 0 {
		start := r.pos
		id, err := r.byte("section id")
		if err != nil {
			return nil, err
		}
		size, err := r.u32("section size")
		if err != nil {
			return nil, err
		}
		bodyOff := r.off()
		body, err := r.bytes(int(size), "section")
		if err != nil {
			return nil, err
		}
		if id != secTable {
			out = append(out, wasm[start:r.pos]...)
			continue
		}
		capped, err := capTableSection(body, bodyOff, grow)
		if err != nil {
			return nil, err
		}
		if out, err = appendSection(out, secTable, capped, "table"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// tableType is a table of the table section, as CapTables sees it.
type tableType struct {
	elem byte
	min  uint32
	max  uint64 // math.MaxUint32+1 when none is declared
}

// readTables decodes a table section. Only function and extern
// references, and 32-bit limits with or without a maximum, are supported.
func readTables(body []byte, base int) ([]tableType, error) {
	r := &reader{buf: body, base: base}
	n, err := r.count("table count", 2)
	if err != nil {
		return nil, err
	}
	if n > MaxTables {
		return nil, limitf(base, "%d tables, more than the limit of %d", n, MaxTables)
	}
	tables := make([]tableType, n)
	for i := range tables {
		t := &tables[i]
		if t.elem, err = r.byte("table element type"); err != nil {
			return nil, err
		}
		if t.elem != 0x70 && t.elem != 0x6f {
			return nil, unsupported(r.off()-1, "table %d has element type %#x", i, t.elem)
		}
		flags, err := r.byte("table limits flags")
		if err != nil {
			return nil, err
		}
		if flags > 1 {
			return nil, unsupported(r.off()-1, "table %d has limits flags %#x", i, flags)
		}
		if t.min, err = r.u32("table minimum"); err != nil {
			return nil, err
		}
		t.max = math.MaxUint32 + 1
		if flags == 1 {
			maximum, err := r.u32("table maximum")
			if err != nil {
				return nil, err
			}
			if maximum < t.min {
				return nil, r.fail("table %d has maximum %d below its minimum %d", i, maximum, t.min)
			}
			t.max = uint64(maximum)
		}
	}
	if r.remaining() != 0 {
		return nil, r.fail("%d bytes after the last table", r.remaining())
	}
	return tables, nil
}

func capTableSection(body []byte, base int, grow uint32) ([]byte, error) {
	tables, err := readTables(body, base)
	if err != nil {
		return nil, err
	}
	var mins uint64
	for _, t := range tables {
		mins += uint64(t.min)
	}
	if mins > MaxTableEntries {
		return nil, limitf(base, "tables have %d entries in all, more than the limit of %d", mins, MaxTableEntries)
	}
	budget := min(uint64(grow), MaxTableEntries-mins)
	want := make([]uint64, len(tables))
	for i, t := range tables {
		want[i] = min(t.max-uint64(t.min), budget)
	}
	got := shareGrowth(want, budget)
	out := appendU32(make([]byte, 0, len(body)+len(tables)*5), uint32(len(tables)))
	for i, t := range tables {
		out = append(out, t.elem, 1)
		out = appendU32(out, t.min)
		out = appendU32(out, t.min+uint32(got[i])) // ≤ MaxTableEntries
	}
	return out, nil
}

// shareGrowth shares budget among tables that want want[i] entries each:
// in increasing order of want, a table gets what it wants up to an equal
// share of what is left (max-min fairness). The shares add up to at most
// budget; when the wants do, every table gets what it wants, which makes
// capping idempotent.
func shareGrowth(want []uint64, budget uint64) []uint64 {
	order := make([]int, len(want))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case want[a] < want[b]:
			return -1
		case want[a] > want[b]:
			return 1
		}
		return 0
	})
	got := make([]uint64, len(want))
	left := budget
	for k, i := range order {
		got[i] = min(want[i], left/uint64(len(order)-k))
		left -= got[i]
	}
	return got
}

// TableBytes returns how many bytes wazero v1.12 allocates outside linear
// memory, at most, for the tables and element segments of one instance of
// wasm: TableEntryBytes per entry of every table's maximum, and per entry
// of every passive element segment (which wazero copies into each
// instance, for table.init). wasm must be the output of CapTables (or of
// a rewrite of it): a table without a maximum, or an imported table, is an
// error wrapping ErrLimit.
//
// Nothing else a guest does makes these allocations larger: table.grow
// fails past a table's maximum, and table.init, table.copy, table.set and
// active element segments only write within a table's current size.
func TableBytes(wasm []byte) (uint64, error) {
	m, err := parse(wasm)
	if err != nil {
		return 0, err
	}
	if m.importedTables > 0 {
		return 0, limitf(m.importedTableAt, "the module imports a table")
	}
	var entries uint64
	if m.hasTable {
		tables, err := readTables(wasm[m.tableBody:m.tableEnd], m.tableBody)
		if err != nil {
			return 0, err
		}
		for i, t := range tables {
			if t.max > math.MaxUint32 {
				return 0, limitf(m.tableBody, "table %d has no maximum (CapTables gives every table one)", i)
			}
			entries += t.max
		}
	}
	if m.hasElement {
		c := &limitChecker{}
		if err := c.elementSection(&reader{buf: wasm[m.elemBody:m.elemEnd], base: m.elemBody}); err != nil {
			return 0, err
		}
		entries += c.passiveElems
	}
	// At most 2^32 tables' worth plus a module's bytes of element
	// entries: no overflow.
	return entries * TableEntryBytes, nil
}
