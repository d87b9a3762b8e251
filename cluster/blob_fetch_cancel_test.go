package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// silentPeer is a peer API that completes the TLS handshake (it holds a
// node certificate of the cluster), reads a request and never answers:
// a node that hangs, not one that is down.
type silentPeer struct {
	ln       net.Listener
	asked    chan struct{} // closed at the first request
	once     sync.Once
	mu       sync.Mutex
	conns    []net.Conn
	wg       sync.WaitGroup
	stopOnce sync.Once
}

func startSilentPeer(t *testing.T, id *NodeIdentity) *silentPeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silentPeer{ln: tls.NewListener(ln, id.APIServerTLS()), asked: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := p.ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return // the client gave up, or stop
					}
					p.once.Do(func() { close(p.asked) })
				}
			}()
		}
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *silentPeer) addr() string { return p.ln.Addr().String() }

func (p *silentPeer) stop() {
	p.stopOnce.Do(func() {
		_ = p.ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
}

// An agent fetching a module from a peer that accepts and never answers
// stops at Close: the fetch runs under the agent's context, not a
// two-minute timeout of its own that Close would wait out.
func TestAgentCloseStopsABlobFetchFromASilentPeer(t *testing.T) {
	cfg := agentConfigFor(t, t.TempDir())
	// The autopilot must not remove the silent server before the fetch
	// asks it.
	cfg.Autopilot.DeadServerTimeout = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := StartAgent(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			a.Close()
		}
	})

	peer := startSilentPeer(t, a.identity)
	if err := a.Store().Node().AddServer(ctx, "silent", "127.0.0.1:1", false); err != nil {
		t.Fatal(err)
	}
	a.peers.Set("silent", "https://"+peer.addr())

	// A version whose module no node has: the blob sync asks the peers.
	var module [64]byte
	_, _ = rand.Read(module[:])
	sum := sha256.Sum256(module[:])
	cmd, err := storage.EncodeCommand(storage.Command{Op: storage.OpDeploy, Name: "missing",
		Spec: &storage.Spec{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(module))}, At: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Store().Node().Apply(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	select {
	case <-peer.asked:
	case <-time.After(30 * time.Second):
		t.Fatal("the blob sync never asked the silent peer")
	}

	start := time.Now()
	done := make(chan struct{})
	go func() { a.Close(); close(done) }()
	select {
	case <-done:
		closed = true
	case <-time.After(15 * time.Second):
		// Let the fetch end so the agent's goroutines do not outlive
		// the test.
		peer.stop()
		<-done
		closed = true
		t.Fatalf("Close still waited %v for a blob fetch from a peer that never answers", time.Since(start).Round(time.Second))
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %v with a blob fetch in flight; want a few seconds at most", took.Round(time.Millisecond))
	}
}
