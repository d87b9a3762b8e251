package storage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testSpec(tag string) *Spec {
	return &Spec{
		SHA256: shaOf([]byte(tag)),
		Size:   int64(len(tag)),
		Mode:   ModePooled,
		Reset:  ResetAuto,
		Env:    map[string]string{"GREETING": "hi " + tag},
		Routes: []Route{{Host: "*.example.com", Path: "/" + tag + "/*", Methods: []string{"GET"}}},
		Limits: Limits{Timeout: Duration(time.Second), MaxInstances: 4},
	}
}

func deploy(name, tag string) Command {
	return Command{Op: OpDeploy, Name: name, Spec: testSpec(tag), At: t0}
}

func rollback(name string, to int64) Command {
	return Command{Op: OpRollback, Name: name, Version: to, At: t0}
}

func remove(name string) Command {
	return Command{Op: OpRemove, Name: name, At: t0}
}

// applyAll applies cmds from index 1 and returns the results.
func applyAll(t *testing.T, r *Registry, cmds ...Command) []ApplyResult {
	t.Helper()
	var out []ApplyResult
	for _, c := range cmds {
		b, err := json.Marshal(c) // unvalidated on purpose: Apply must check
		if err != nil {
			t.Fatal(err)
		}
		res := r.Apply(&raft.Log{Index: r.State().Index() + 1, Type: raft.LogCommand, Data: b})
		ar, ok := res.(ApplyResult)
		if !ok {
			t.Fatalf("Apply returned %T, want ApplyResult", res)
		}
		out = append(out, ar)
	}
	return out
}

func TestRegistryApply(t *testing.T) {
	type want struct {
		version int64 // result version; 0 for remove or error
		err     error
	}
	tests := []struct {
		name   string
		cmds   []Command
		want   []want
		active map[string]int64 // function -> active version afterwards; absent = not registered
	}{
		{
			name:   "deploys number from 1",
			cmds:   []Command{deploy("a", "1"), deploy("a", "2"), deploy("b", "1"), deploy("a", "3")},
			want:   []want{{1, nil}, {2, nil}, {1, nil}, {3, nil}},
			active: map[string]int64{"a": 3, "b": 1},
		},
		{
			name:   "rollback to a named version",
			cmds:   []Command{deploy("a", "1"), deploy("a", "2"), deploy("a", "3"), rollback("a", 1)},
			want:   []want{{1, nil}, {2, nil}, {3, nil}, {1, nil}},
			active: map[string]int64{"a": 1},
		},
		{
			name:   "rollback 0 goes to the previously active version",
			cmds:   []Command{deploy("a", "1"), deploy("a", "2"), deploy("a", "3"), rollback("a", 0)},
			want:   []want{{1, nil}, {2, nil}, {3, nil}, {2, nil}},
			active: map[string]int64{"a": 2},
		},
		{
			name:   "rollback 0 twice toggles, like helm and kubectl",
			cmds:   []Command{deploy("a", "1"), deploy("a", "2"), deploy("a", "3"), rollback("a", 1), rollback("a", 0), rollback("a", 0)},
			want:   []want{{1, nil}, {2, nil}, {3, nil}, {1, nil}, {3, nil}, {1, nil}},
			active: map[string]int64{"a": 1},
		},
		{
			name:   "deploy after rollback takes the next number",
			cmds:   []Command{deploy("a", "1"), deploy("a", "2"), rollback("a", 1), deploy("a", "3"), rollback("a", 0)},
			want:   []want{{1, nil}, {2, nil}, {1, nil}, {3, nil}, {1, nil}},
			active: map[string]int64{"a": 1},
		},
		{
			name:   "rollback to the active version is a no-op",
			cmds:   []Command{deploy("a", "1"), deploy("a", "2"), rollback("a", 2), rollback("a", 0)},
			want:   []want{{1, nil}, {2, nil}, {2, nil}, {1, nil}},
			active: map[string]int64{"a": 1},
		},
		{
			name:   "rollback errors",
			cmds:   []Command{rollback("a", 1), deploy("a", "1"), rollback("a", 0), rollback("a", 2), rollback("a", -1)},
			want:   []want{{0, ErrFunctionNotFound}, {1, nil}, {0, ErrVersionNotFound}, {0, ErrVersionNotFound}, {0, ErrInvalid}},
			active: map[string]int64{"a": 1},
		},
		{
			name:   "remove then redeploy keeps numbering",
			cmds:   []Command{deploy("a", "1"), deploy("a", "2"), remove("a"), remove("a"), rollback("a", 1), deploy("a", "3")},
			want:   []want{{1, nil}, {2, nil}, {0, nil}, {0, ErrFunctionNotFound}, {0, ErrFunctionNotFound}, {3, nil}},
			active: map[string]int64{"a": 3},
		},
		{
			name: "invalid commands change nothing",
			cmds: []Command{
				deploy("a", "1"),
				{Op: "explode", Name: "a", At: t0},
				{Op: OpDeploy, Name: "a", At: t0},
				deploy("Bad_Name", "1"),
				{Op: OpDeploy, Name: "a", Spec: &Spec{SHA256: "nope", Size: 1}, At: t0},
				{Op: OpDeploy, Name: "a", Spec: &Spec{SHA256: shaOf(nil), Size: 1, Mode: "turbo"}, At: t0},
				{Op: OpDeploy, Name: "a", Spec: &Spec{SHA256: shaOf(nil), Size: 1, Reset: "sometimes"}, At: t0},
				{Op: OpDeploy, Name: "a", Spec: &Spec{SHA256: shaOf(nil), Size: 0}, At: t0},
				remove(""),
			},
			want: []want{{1, nil}, {0, ErrInvalid}, {0, ErrInvalid}, {0, ErrInvalid}, {0, ErrInvalid},
				{0, ErrInvalid}, {0, ErrInvalid}, {0, ErrInvalid}, {0, ErrInvalid}},
			active: map[string]int64{"a": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRegistry()
			got := applyAll(t, r, tt.cmds...)
			for i, res := range got {
				w := tt.want[i]
				if w.err != nil {
					if !errors.Is(res.Err, w.err) {
						t.Errorf("command %d (%s %s): err %v, want %v", i, tt.cmds[i].Op, tt.cmds[i].Name, res.Err, w.err)
					}
				} else if res.Err != nil {
					t.Errorf("command %d (%s %s): unexpected err %v", i, tt.cmds[i].Op, tt.cmds[i].Name, res.Err)
				}
				if res.Version.Version != w.version {
					t.Errorf("command %d (%s %s): version %d, want %d", i, tt.cmds[i].Op, tt.cmds[i].Name, res.Version.Version, w.version)
				}
			}
			st := r.State()
			if st.Index() != uint64(len(tt.cmds)) {
				t.Errorf("Index = %d, want %d (failed commands advance it too)", st.Index(), len(tt.cmds))
			}
			gotActive := map[string]int64{}
			for _, f := range st.Functions() {
				gotActive[f.Name] = f.Active
			}
			if !reflect.DeepEqual(gotActive, tt.active) {
				t.Errorf("active = %v, want %v", gotActive, tt.active)
			}
		})
	}
}

func TestRegistryVersionContents(t *testing.T) {
	r := NewRegistry()
	at := t0.Add(time.Hour)
	c := deploy("fn", "1")
	c.At = at
	applyAll(t, r, c, deploy("fn", "2"), remove("fn"), deploy("fn", "3"))
	f, ok := r.State().Function("fn")
	if !ok {
		t.Fatal("fn not registered")
	}
	if len(f.Versions) != 1 || f.Versions[0].Version != 3 {
		t.Fatalf("after remove and redeploy, versions = %+v; want only version 3", f.Versions)
	}
	v, ok := f.ActiveVersion()
	if !ok || !reflect.DeepEqual(v.Spec, *testSpec("3")) || !v.DeployedAt.Equal(t0) {
		t.Fatalf("active version = %+v", v)
	}
	// A rollback to a removed version says which versions there are.
	res := applyAll(t, r, deploy("fn", "4"), rollback("fn", 1))
	if err := res[1].Err; !errors.Is(err, ErrVersionNotFound) || !strings.Contains(err.Error(), "it keeps versions 3 to 4") {
		t.Fatalf("rollback to removed version 1: %v, want it to name versions 3 to 4", err)
	}

	r = NewRegistry()
	applyAll(t, r, c, deploy("fn", "2"))
	f, _ = r.State().Function("fn")
	v1, _ := f.FindVersion(1)
	if !v1.DeployedAt.Equal(at) || v1.SHA256 != shaOf([]byte("1")) {
		t.Fatalf("version 1 = %+v: DeployedAt must come from the command", v1)
	}
	if _, ok := r.State().Function("nope"); ok {
		t.Fatal("Function(nope) found")
	}
}

// TestRegistryStatesAreImmutable checks that applying a command does not
// change a State a reader already holds.
func TestRegistryStatesAreImmutable(t *testing.T) {
	r := NewRegistry()
	applyAll(t, r, deploy("a", "1"), deploy("b", "1"))
	before := r.State()
	var buf bytes.Buffer
	if err := before.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	applyAll(t, r, deploy("a", "2"), rollback("a", 1), remove("b"), deploy("c", "1"))
	var after bytes.Buffer
	if err := before.Encode(&after); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), after.Bytes()) {
		t.Fatalf("an old State changed:\nbefore %s\nafter  %s", buf.Bytes(), after.Bytes())
	}
	if before.Len() != 2 || r.State().Len() != 2 {
		t.Fatalf("Len: before %d, now %d", before.Len(), r.State().Len())
	}
}

func TestRegistryLiveBlobs(t *testing.T) {
	r := NewRegistry()
	applyAll(t, r, deploy("a", "1"), deploy("a", "2"), deploy("b", "2"), deploy("c", "3"), remove("c"))
	got := r.State().LiveBlobs()
	want := map[string]struct{}{shaOf([]byte("1")): {}, shaOf([]byte("2")): {}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("LiveBlobs = %v, want %v", got, want)
	}
}

func TestRegistryFunctionsSorted(t *testing.T) {
	r := NewRegistry()
	applyAll(t, r, deploy("zeta", "1"), deploy("alpha", "1"), deploy("mid", "1"))
	var names []string
	for _, f := range r.State().Functions() {
		names = append(names, f.Name)
	}
	if strings.Join(names, ",") != "alpha,mid,zeta" {
		t.Fatalf("Functions order = %v", names)
	}
}

func TestRegistrySubscribe(t *testing.T) {
	r := NewRegistry()
	ch, unsub := r.Subscribe()
	ch2, unsub2 := r.Subscribe()
	defer unsub2()
	applyAll(t, r, deploy("a", "1"), deploy("a", "2"))
	select {
	case <-ch:
	default:
		t.Fatal("no notification after Apply")
	}
	select {
	case <-ch:
		t.Fatal("two notifications pending; the buffer is one")
	default:
	}
	<-ch2
	unsub()
	unsub() // idempotent
	applyAll(t, r, remove("a"))
	select {
	case <-ch:
		t.Fatal("notified after unsubscribe")
	default:
	}
	<-ch2

	// Restore notifies too.
	var buf bytes.Buffer
	if err := r.State().Encode(&buf); err != nil {
		t.Fatal(err)
	}
	if err := r.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch2:
	default:
		t.Fatal("no notification after Restore")
	}
}

func TestValidateSpec(t *testing.T) {
	ok := *testSpec("ok")
	if err := ValidateSpec("ok", ok); err != nil {
		t.Fatalf("valid spec: %v", err)
	}
	mut := func(f func(s *Spec)) Spec {
		s := *testSpec("x")
		f(&s)
		return s
	}
	tests := []struct {
		name  string
		spec  Spec
		field string // the message must name it
	}{
		{"-bad", ok, "function name"},
		{"ok", mut(func(s *Spec) { s.SHA256 = strings.ToUpper(s.SHA256) }), "spec.sha256"},
		{"ok", mut(func(s *Spec) { s.Size = -1 }), "spec.size"},
		{"ok", mut(func(s *Spec) { s.Mode = "fast" }), "spec.mode"},
		{"ok", mut(func(s *Spec) { s.Reset = "always" }), "spec.reset"},
		{"ok", mut(func(s *Spec) { s.Env = map[string]string{"A=B": "x"} }), "spec.env"},
		{"ok", mut(func(s *Spec) { s.Env = map[string]string{"": "x"} }), "spec.env"},
		{"ok", mut(func(s *Spec) { s.Env = map[string]string{"K": "se\x00cret"} }), "spec.env"},
		{"ok", mut(func(s *Spec) { s.Env = map[string]string{"K": strings.Repeat("x", MaxEnvBytes)} }), "spec.env"},
		{"ok", mut(func(s *Spec) { s.Routes = []Route{{Path: "nope"}} }), "spec.routes[0].path"},
		{"ok", mut(func(s *Spec) { s.Routes = []Route{{Host: "a b"}} }), "spec.routes[0].host"},
		{"ok", mut(func(s *Spec) { s.Routes = []Route{{Methods: []string{"GET", "G T"}}} }), "spec.routes[0].methods[1]"},
		{"ok", mut(func(s *Spec) { s.Routes = make([]Route, MaxRoutes+1) }), "spec.routes"},
		{"ok", mut(func(s *Spec) { s.Limits.Timeout = -1 }), "spec.limits.timeout"},
		{"ok", mut(func(s *Spec) { s.Limits.MaxInstances = -1 }), "spec.limits.max_instances"},
	}
	for _, tt := range tests {
		err := ValidateSpec(tt.name, tt.spec)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("ValidateSpec(%s): %v; want ErrInvalid naming %s", tt.field, err, tt.field)
		}
		if err != nil && strings.Contains(err.Error(), "se\x00cret") {
			t.Errorf("error shows an env value: %v", err)
		}
	}
}

func TestEncodeDecodeCommand(t *testing.T) {
	c := deploy("fn", "1")
	b, err := EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip: %+v, want %+v", got, c)
	}
	if _, err := EncodeCommand(Command{Op: "nope"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("EncodeCommand of an invalid command: %v", err)
	}
	// Unknown fields from a newer proposer are ignored.
	if _, err := DecodeCommand([]byte(`{"op":"remove","name":"fn","at":"2026-01-01T00:00:00Z","future":1}`)); err != nil {
		t.Fatalf("unknown field: %v", err)
	}
	for _, bad := range []string{``, `null`, `[]`, `{"op":"deploy","name":"fn","spec":null}`, `{"op":"remove","name":"fn","at":"yesterday"}`} {
		if _, err := DecodeCommand([]byte(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeCommand(%q): %v, want ErrInvalid", bad, err)
		}
	}
}

// TestSnapshotRestore round-trips a registry through raft's FSM snapshot
// interface and an in-memory sink, and checks the restored registry goes on
// numbering versions where the first stopped.
func TestSnapshotRestore(t *testing.T) {
	r := NewRegistry()
	applyAll(t, r,
		deploy("a", "1"), deploy("a", "2"), deploy("a", "3"), rollback("a", 1),
		deploy("b", "1"), remove("b"),
		deploy("c", "1"),
	)
	snap, err := r.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	// Later applies must not leak into the snapshot.
	applyAll(t, r, deploy("d", "1"))
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if !sink.closed {
		t.Fatal("Persist did not close the sink")
	}

	r2 := NewRegistry()
	if err := r2.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	st := r2.State()
	if st.Index() != 7 || st.Len() != 2 {
		t.Fatalf("restored Index %d, Len %d; want 7, 2", st.Index(), st.Len())
	}
	var again bytes.Buffer
	if err := st.Encode(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), sink.Bytes()) {
		t.Fatalf("re-encoded snapshot differs:\n%s\n%s", again.Bytes(), sink.Bytes())
	}
	// Numbering and rollback history survive.
	res := applyAll(t, r2, rollback("a", 0), deploy("b", "2"), deploy("a", "4"))
	if res[0].Version.Version != 3 || res[1].Version.Version != 2 || res[2].Version.Version != 4 {
		t.Fatalf("after restore: %+v", res)
	}
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	good := func() string {
		r := NewRegistry()
		applyAll(t, r, deploy("a", "1"), deploy("a", "2"))
		var b bytes.Buffer
		if err := r.State().Encode(&b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}()
	lines := strings.SplitAfter(good, "\n")
	for name, snap := range map[string]string{
		"empty":          "",
		"future format":  strings.Replace(good, fmt.Sprintf(`"format":%d`, snapshotFormat), `"format":99`, 1),
		"truncated":      lines[0],
		"trailing data":  good + good,
		"bad name":       strings.Replace(good, `"name":"a"`, `"name":"A"`, 2),
		"active missing": strings.Replace(good, `"active":2`, `"active":7`, 1),
		"not json":       "{{{",
	} {
		r := NewRegistry()
		if err := r.Restore(io.NopCloser(strings.NewReader(snap))); err == nil {
			t.Errorf("%s: Restore accepted it", name)
		}
		if r.State().Len() != 0 {
			t.Errorf("%s: a failed Restore changed the state", name)
		}
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

func ExampleRegistry() {
	r := NewRegistry()
	for i, c := range []Command{
		{Op: OpDeploy, Name: "hello", Spec: &Spec{SHA256: strings.Repeat("ab", 32), Size: 8}, At: t0},
		{Op: OpDeploy, Name: "hello", Spec: &Spec{SHA256: strings.Repeat("cd", 32), Size: 8}, At: t0},
		{Op: OpRollback, Name: "hello", At: t0},
	} {
		b, _ := EncodeCommand(c)
		res := r.ApplyCommand(uint64(i+1), b)
		fmt.Println(c.Op, res.Version.Version, res.Err)
	}
	f, _ := r.State().Function("hello")
	fmt.Println("active", f.Active, "of", len(f.Versions))
	// Output:
	// deploy 1 <nil>
	// deploy 2 <nil>
	// rollback 1 <nil>
	// active 1 of 2
}

// TestRegistryConcurrentReaders reads states while commands apply; run it
// with -race to check that published states are never written.
func TestRegistryConcurrentReaders(t *testing.T) {
	r := NewRegistry()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				st := r.State()
				for _, f := range st.Functions() {
					if _, ok := f.ActiveVersion(); !ok {
						t.Errorf("%s: active version %d missing", f.Name, f.Active)
						return
					}
					for _, v := range f.Versions {
						_ = v.Env["GREETING"]
					}
				}
				_ = st.LiveBlobs()
			}
		}()
	}
	for i := range 200 {
		name := fmt.Sprintf("fn-%d", i%7)
		switch i % 5 {
		case 3:
			applyAll(t, r, rollback(name, 0))
		case 4:
			applyAll(t, r, remove(name))
		default:
			applyAll(t, r, deploy(name, fmt.Sprint(i)))
		}
	}
	close(stop)
	wg.Wait()
}
