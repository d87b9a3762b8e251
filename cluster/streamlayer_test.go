package cluster

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// newTestStreamLayer listens on loopback with id, with a short handshake
// timeout, and reports refused connections on the returned channel.
func newTestStreamLayer(t *testing.T, id *NodeIdentity) (*tlsStreamLayer, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rejected := make(chan error, 16)
	l := newTLSStreamLayer(ln, nil, id, 500*time.Millisecond, func(_ net.Addr, err error) { rejected <- err })
	t.Cleanup(func() { l.Close() })
	return l, rejected
}

// acceptOne runs Accept in the background.
func acceptOne(l *tlsStreamLayer) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

func TestStreamLayerMutualTLS(t *testing.T) {
	pkiLeakCheck(t)
	ca := newTestCA(t)
	a, _ := newTestStreamLayer(t, newTestIdentity(t, ca, "node-a"))
	b, _ := newTestStreamLayer(t, newTestIdentity(t, ca, "node-b"))

	accepted := acceptOne(a)
	c, err := b.Dial(raft.ServerAddress(a.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("Accept failed")
	}
	defer s.Close()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q %v", buf, err)
	}
	if id, err := PeerNodeID(s.(*streamConn).ConnectionState()); err != nil || id != "node-b" {
		t.Errorf("acceptor sees %q %v", id, err)
	}
	cs := c.(*streamConn).ConnectionState()
	if id, err := PeerNodeID(cs); err != nil || id != "node-a" || cs.NegotiatedProtocol != RaftALPN {
		t.Errorf("dialer sees %q %v over %q", id, err, cs.NegotiatedProtocol)
	}
}

func TestStreamLayerRefusesStrangers(t *testing.T) {
	pkiLeakCheck(t)
	ours, theirs := newTestCA(t), newTestCA(t)
	aID := newTestIdentity(t, ours, "node-a")
	a, rejected := newTestStreamLayer(t, aID)
	addr := a.Addr().String()
	stranger := newTestIdentity(t, theirs, "node-x")

	// refused dials c and expects the server to refuse, reading until
	// the server closes the connection.
	refused := func(name string, c net.Conn, send []byte) {
		t.Helper()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if len(send) > 0 {
			c.Write(send)
		}
		if _, err := io.ReadAll(c); err != nil && !isClosedByPeer(err) {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("%s: the server kept the connection open", name)
			}
		}
		select {
		case err := <-rejected:
			t.Logf("%s: refused: %v", name, err)
		case <-time.After(10 * time.Second):
			t.Errorf("%s: the server did not report a refusal", name)
		}
	}
	dialTCP := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tlsClient := func(cfg *tls.Config) net.Conn {
		return tls.Client(dialTCP(), cfg)
	}

	refused("plain TCP with junk", dialTCP(), []byte("GET / HTTP/1.1\r\n\r\n"))
	refused("silent TCP (handshake timeout)", dialTCP(), nil)

	anon := withRaftALPN(aID.ClientTLS())
	anon.Certificates = nil
	refused("TLS without a client certificate", tlsClient(anon), []byte{0})

	refused("certificate of another CA", tlsClient(pushyClient(stranger, aID)), []byte{0})

	refused("node certificate without the raft ALPN (e.g. an HTTPS client)", tlsClient(aID.ClientTLS()), []byte{0})

	// The stranger's own stream layer refuses our server too.
	x, _ := newTestStreamLayer(t, stranger)
	if _, err := x.Dial(raft.ServerAddress(addr), 5*time.Second); err == nil {
		t.Error("a layer of another cluster accepted our server")
	}
	<-rejected // our side saw that handshake fail as well

	// After all that, the first connection Accept returns is a node's.
	accepted := acceptOne(a)
	b, _ := newTestStreamLayer(t, newTestIdentity(t, ours, "node-b"))
	c, err := b.Dial(raft.ServerAddress(addr), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-accepted
	if s == nil {
		t.Fatal("Accept failed")
	}
	defer s.Close()
	if id, _ := PeerNodeID(s.(*streamConn).ConnectionState()); id != "node-b" {
		t.Errorf("first accepted connection is from %q, want node-b", id)
	}
}

// pushyClient is a raft client config with stranger's certificate that
// trusts target's CA and sends its certificate even though target's
// server asks for certificates of its own CA only (Go's client would
// otherwise send none), so the server's own check is what refuses it.
func pushyClient(stranger, target *NodeIdentity) *tls.Config {
	c := withRaftALPN(stranger.ClientTLS())
	c.RootCAs = target.ClientTLS().RootCAs
	cert := c.Certificates[0]
	c.Certificates = nil
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return c
}

// isClosedByPeer reports the errors of reading a connection the peer
// closed or reset.
func isClosedByPeer(err error) bool {
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

func TestStreamLayerCloseEndsEverything(t *testing.T) {
	pkiLeakCheck(t)
	ca := newTestCA(t)
	a, _ := newTestStreamLayer(t, newTestIdentity(t, ca, "node-a"))
	b, _ := newTestStreamLayer(t, newTestIdentity(t, ca, "node-b"))
	accepted := acceptOne(a)
	c, err := b.Dial(raft.ServerAddress(a.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	// A half-open handshake is in progress when a closes.
	half, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Accept(); err == nil {
		t.Error("Accept after Close succeeded")
	}
	if _, err := a.Dial(raft.ServerAddress(b.Addr().String()), time.Second); err == nil {
		t.Error("Dial after Close succeeded")
	}
	// The accepted connection was closed by a, so b's end sees EOF.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the peer's connection stayed open after Close")
	}
	c.Close()
	if _, err := s.Write([]byte("x")); err == nil {
		t.Error("a closed connection still writes")
	}
}

// counterFSM counts applied entries.
type counterFSM struct {
	mu   sync.Mutex
	logs []string
}

func (f *counterFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs = append(f.logs, string(l.Data))
	return len(f.logs)
}

func (f *counterFSM) has(s string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.logs {
		if l == s {
			return true
		}
	}
	return false
}

func (f *counterFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("not needed") }
func (f *counterFSM) Restore(io.ReadCloser) error         { return errors.New("not needed") }

// tlsRaftNode is one raft server over NewTLSTransport.
type tlsRaftNode struct {
	r     *raft.Raft
	trans *raft.NetworkTransport
	fsm   *counterFSM
}

func newTLSRaftNode(t *testing.T, id *NodeIdentity) *tlsRaftNode {
	t.Helper()
	trans, err := NewTLSTransport("127.0.0.1:0", "", id, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id.NodeID())
	rc.HeartbeatTimeout = 200 * time.Millisecond
	rc.ElectionTimeout = 200 * time.Millisecond
	rc.LeaderLeaseTimeout = 100 * time.Millisecond
	rc.Logger = hclog.NewNullLogger()
	n := &tlsRaftNode{trans: trans, fsm: &counterFSM{}}
	n.r, err = raft.NewRaft(rc, n.fsm, raft.NewInmemStore(), raft.NewInmemStore(), raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		trans.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.r.Shutdown().Error(); err != nil {
			t.Errorf("shutdown %s: %v", id.NodeID(), err)
		}
	})
	return n
}

func TestStreamLayerCarriesRaft(t *testing.T) {
	pkiLeakCheck(t)
	ours, theirs := newTestCA(t), newTestCA(t)
	n1 := newTLSRaftNode(t, newTestIdentity(t, ours, "n1"))
	n2 := newTLSRaftNode(t, newTestIdentity(t, ours, "n2"))
	boot := raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: n1.trans.LocalAddr()}}}
	if err := n1.r.BootstrapCluster(boot).Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "n1 to lead", func() bool { return n1.r.State() == raft.Leader })
	if err := n1.r.AddVoter("n2", n2.trans.LocalAddr(), 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := n1.r.Apply([]byte("entry-"+strconv.Itoa(i)), 10*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "n2 to apply the entries", func() bool { return n2.fsm.has("entry-2") })
	if leader, id := n2.r.LeaderWithID(); id != "n1" || leader != n1.trans.LocalAddr() {
		t.Errorf("n2 follows %s (%s), want n1", id, leader)
	}

	// A raft node of another cluster, with the same node ID as a member,
	// can neither replicate to nor vote in this cluster, nor be reached.
	x := newTLSRaftNode(t, newTestIdentity(t, theirs, "n2"))
	term := n1.r.Stats()["term"]
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n2"), Addr: []byte(x.trans.LocalAddr())}
	var ae raft.AppendEntriesResponse
	err := x.trans.AppendEntries("n1", n1.trans.LocalAddr(), &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 1 << 40, Entries: []*raft.Log{{Index: 1 << 30, Term: 1 << 40, Data: []byte("evil")}}}, &ae)
	if err == nil {
		t.Error("AppendEntries from another cluster's node succeeded")
	}
	var rv raft.RequestVoteResponse
	if err := x.trans.RequestVote("n1", n1.trans.LocalAddr(), &raft.RequestVoteRequest{RPCHeader: hdr, Term: 1 << 40, LastLogIndex: 1 << 30, LastLogTerm: 1 << 40}, &rv); err == nil {
		t.Error("RequestVote from another cluster's node succeeded")
	}
	if err := n1.trans.AppendEntries("n2", x.trans.LocalAddr(), &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 1}, &ae); err == nil {
		t.Error("the leader replicated to another cluster's node")
	}
	// One that trusts this cluster's CA (so it reaches the RPC) but has a
	// certificate of its own CA is refused by n1's server.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	evilID := newTestIdentity(t, theirs, "n3")
	evilStream := newTLSStreamLayer(ln, nil, evilID, time.Second, nil)
	evilStream.clientTLS = pushyClient(evilID, newTestIdentity(t, ours, "n9"))
	evil := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: evilStream, MaxPool: 1, Timeout: 5 * time.Second, Logger: hclog.NewNullLogger()})
	defer evil.Close()
	if err := evil.AppendEntries("n1", n1.trans.LocalAddr(), &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 1 << 40}, &ae); err == nil {
		t.Error("AppendEntries with a foreign certificate trusting our CA succeeded")
	}
	if err := evil.RequestVote("n1", n1.trans.LocalAddr(), &raft.RequestVoteRequest{RPCHeader: hdr, Term: 1 << 40, LastLogIndex: 1 << 30, LastLogTerm: 1 << 40}, &rv); err == nil {
		t.Error("RequestVote with a foreign certificate trusting our CA succeeded")
	}
	if n1.r.State() != raft.Leader || n1.r.Stats()["term"] != term || n1.fsm.has("evil") {
		t.Errorf("the cluster was disturbed: n1 %v term %s (was %s)", n1.r.State(), n1.r.Stats()["term"], term)
	}
	if err := n1.r.Apply([]byte("after"), 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "n2 to apply after the intrusion", func() bool { return n2.fsm.has("after") })
}

func TestStreamLayerNewTLSTransportErrors(t *testing.T) {
	id := newTestIdentity(t, newTestCA(t), "n1")
	for name, f := range map[string]func() error{
		"no identity":           func() error { _, err := NewTLSTransport("127.0.0.1:0", "", nil, nil); return err },
		"unspecified advertise": func() error { _, err := NewTLSTransport("127.0.0.1:0", "0.0.0.0:7000", id, nil); return err },
		"unspecified bind":      func() error { _, err := NewTLSTransport("0.0.0.0:0", "", id, nil); return err },
		"bad bind":              func() error { _, err := NewTLSTransport("127.0.0.1:99999", "", id, nil); return err },
	} {
		if err := f(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	tr, err := NewTLSTransport("0.0.0.0:0", "127.0.0.1:7000", id, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.LocalAddr() != "127.0.0.1:7000" {
		t.Errorf("advertises %s", tr.LocalAddr())
	}
}
