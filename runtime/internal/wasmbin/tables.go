package wasmbin

// MaxTableGrowth is how many entries CapTables lets a table grow past its
// initial size.
const MaxTableGrowth = 100_000

const secTable = 4

// CapTables returns a copy of the module in which every table the module
// defines has a maximum of at most its minimum plus grow entries.
//
// A table without a maximum may be grown at run time by up to 2^32-1
// entries, and wazero v1.12 allocates a table.grow's new size at once: a
// 50-byte guest asking for 2^31 entries makes it allocate 16 GiB and the
// Go runtime dies of a fatal out-of-memory, taking the node with it. Go and
// C guests never grow their tables, so a cap costs them nothing; a guest
// that grows past it sees table.grow return -1, as the spec allows.
//
// Tables with 64-bit limits or the typed-reference encoding are reported
// as ErrUnsupportedInstruction. The input is never modified.
func CapTables(wasm []byte, grow uint32) ([]byte, error) {
	if len(wasm) < 8 {
		return nil, errorf(0, "module of %d bytes is shorter than its 8-byte header", len(wasm))
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

func capTableSection(body []byte, base int, grow uint32) ([]byte, error) {
	r := &reader{buf: body, base: base}
	n, err := r.count("table count", 2)
	if err != nil {
		return nil, err
	}
	out := appendU32(make([]byte, 0, len(body)+int(n)*5), n)
	for i := uint32(0); i < n; i++ {
		rt, err := r.byte("table element type")
		if err != nil {
			return nil, err
		}
		if rt != 0x70 && rt != 0x6f {
			return nil, unsupported(r.off()-1, "table %d has element type %#x", i, rt)
		}
		flags, err := r.byte("table limits flags")
		if err != nil {
			return nil, err
		}
		if flags > 1 {
			return nil, unsupported(r.off()-1, "table %d has limits flags %#x", i, flags)
		}
		minimum, err := r.u32("table minimum")
		if err != nil {
			return nil, err
		}
		limit := uint32(min(uint64(minimum)+uint64(grow), 1<<32-1))
		if flags == 1 {
			maximum, err := r.u32("table maximum")
			if err != nil {
				return nil, err
			}
			limit = min(limit, maximum)
		}
		out = append(out, rt, 1)
		out = appendU32(out, minimum)
		out = appendU32(out, limit)
	}
	if r.remaining() != 0 {
		return nil, r.fail("%d bytes after the last table", r.remaining())
	}
	return out, nil
}
