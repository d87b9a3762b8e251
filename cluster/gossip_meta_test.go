package cluster

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

func TestGossipMetaRoundTrip(t *testing.T) {
	for _, m := range []NodeMeta{
		{},
		{Role: RoleServer},
		{Role: RoleServer, Region: "eu-west", Version: "v1.2.3", RaftAddr: "10.0.0.1:7947", APIAddr: "[2001:db8::1]:8080"},
		{Region: "ünïcode-region"},
	} {
		for _, leaving := range []bool{false, true} {
			b := encodeMeta(m, leaving)
			got, gotLeaving, err := decodeMeta(b)
			if err != nil || got != m || gotLeaving != leaving {
				t.Errorf("decode(encode(%+v, %v)) = %+v, %v, %v", m, leaving, got, gotLeaving, err)
			}
		}
	}
	typical := encodeMeta(NodeMeta{Role: RoleServer, Region: "eu-west", Version: "v1.2.3", RaftAddr: "10.0.0.1:7947", APIAddr: "10.0.0.1:8080"}, false)
	if len(typical) > 64 {
		t.Errorf("typical meta is %d bytes; the encoding is meant to be compact", len(typical))
	}
}

func TestGossipMetaDecodeErrors(t *testing.T) {
	if m, l, err := decodeMeta(nil); err != nil || m != (NodeMeta{}) || l {
		t.Errorf("decode(nil) = %+v, %v, %v", m, l, err)
	}
	for _, b := range [][]byte{
		{2},                      // unknown format
		{1, metaTagRole},         // no length
		{1, metaTagRole, 5, 'a'}, // truncated value
		{1, metaTagRole, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // varint overflow
	} {
		if _, _, err := decodeMeta(b); err == nil {
			t.Errorf("decode(%v) succeeded", b)
		}
	}
	// Unknown tags from a newer node are skipped.
	b := append(encodeMeta(NodeMeta{Role: RoleServer}, false), 99, 3, 'x', 'y', 'z')
	b = append(b, encodeMeta(NodeMeta{APIAddr: "a:1"}, false)[1:]...)
	if m, _, err := decodeMeta(b); err != nil || m != (NodeMeta{Role: RoleServer, APIAddr: "a:1"}) {
		t.Errorf("decode with an unknown tag = %+v, %v", m, err)
	}
}

func TestGossipMetaLimit(t *testing.T) {
	// The largest meta validateMeta accepts still fits with the leave mark.
	m := NodeMeta{Role: RoleServer}
	for n := 1; ; n++ {
		m.Region = strings.Repeat("r", n)
		if err := validateMeta(m); err != nil {
			if !errors.Is(err, ErrMetaTooLarge) {
				t.Fatalf("validateMeta = %v, want ErrMetaTooLarge", err)
			}
			m.Region = strings.Repeat("r", n-1)
			break
		}
	}
	if n := len(encodeMeta(m, true)); n > memberlist.MetaMaxSize || n < memberlist.MetaMaxSize-2 {
		t.Fatalf("largest accepted meta is %d bytes with the leave mark; want just within %d", n, memberlist.MetaMaxSize)
	}
}

func FuzzGossipMetaDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add(encodeMeta(NodeMeta{Role: RoleServer, Region: "eu", Version: "v1", RaftAddr: "10.0.0.1:7947", APIAddr: "10.0.0.1:8080"}, true))
	f.Add([]byte{1, 99, 2, 'h', 'i'})
	f.Add([]byte{1, 1, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, leaving, err := decodeMeta(b)
		if err != nil {
			return
		}
		again, againLeaving, err := decodeMeta(encodeMeta(m, leaving))
		if err != nil || again != m || againLeaving != leaving {
			t.Fatalf("re-encoding %x: %+v %v -> %+v %v %v", b, m, leaving, again, againLeaving, err)
		}
		if len(b) > 0 && !bytes.HasPrefix(b, []byte{metaFormatV1}) {
			t.Fatalf("accepted format byte %d", b[0])
		}
	})
}
