package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// The layout of a bbolt file's meta pages (go.etcd.io/bbolt, file format
// version 2): pages 0 and 1 each hold a 16-byte page header and then the
// meta, in the host's byte order.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltPageHeader = 16
	boltMetaSize   = 64 // magic .. checksum
	boltMetaSummed = 56 // the bytes the checksum covers
)

// boltMeta is the part of a meta page checkBoltFile needs.
type boltMeta struct {
	pageSize uint32
	freelist uint64
	pgid     uint64 // pages in use: the file holds at least pgid pages
	txid     uint64
}

// readBoltMeta parses the meta at off in f, or says why it is not valid.
func readBoltMeta(f io.ReaderAt, off int64) (boltMeta, error) {
	b := make([]byte, boltPageHeader+boltMetaSize)
	if _, err := f.ReadAt(b, off); err != nil {
		return boltMeta{}, err
	}
	m := b[boltPageHeader:]
	e := binary.NativeEndian
	if e.Uint32(m[0:]) != boltMagic || e.Uint32(m[4:]) != boltVersion {
		return boltMeta{}, errors.New("not a bbolt meta page")
	}
	h := fnv.New64a()
	_, _ = h.Write(m[:boltMetaSummed])
	if sum := e.Uint64(m[56:]); sum != 0 && sum != h.Sum64() {
		return boltMeta{}, errors.New("checksum mismatch")
	}
	return boltMeta{pageSize: e.Uint32(m[8:]), freelist: e.Uint64(m[32:]), pgid: e.Uint64(m[40:]), txid: e.Uint64(m[48:])}, nil
}

// checkBoltFile refuses a bbolt file that bbolt would crash on rather
// than report: one truncated below the pages its meta says are in use
// (bbolt maps the file and reads past its end: SIGBUS, which no recover
// catches), or whose freelist lies outside them. A missing file is fine
// (bbolt creates it).
func checkBoltFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return nil
	}
	m0, err0 := readBoltMeta(f, 0)
	off1 := int64(os.Getpagesize())
	if err0 == nil {
		off1 = int64(m0.pageSize)
	}
	m1, err1 := readBoltMeta(f, off1)
	var m boltMeta
	switch {
	case err0 != nil && err1 != nil:
		return fmt.Errorf("%s is damaged: neither meta page is valid (%v; %v)", path, err0, err1)
	case err0 != nil:
		m = m1
	case err1 != nil || m0.txid >= m1.txid:
		m = m0
	default:
		m = m1
	}
	need := int64(m.pgid) * int64(m.pageSize)
	if m.pageSize == 0 || need > fi.Size() {
		return fmt.Errorf("%s is damaged: it has %d bytes, and its meta page says it holds %d (truncated?)", path, fi.Size(), need)
	}
	if m.freelist >= m.pgid {
		return fmt.Errorf("%s is damaged: its freelist is page %d of %d", path, m.freelist, m.pgid)
	}
	return nil
}
