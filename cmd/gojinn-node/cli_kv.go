package main

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/gojinn/gojinn/cluster"
)

const kvUsage = `usage: gojinn-node kv get NAMESPACE KEY [--linearizable] [--json]
       gojinn-node kv put NAMESPACE KEY VALUE|- [--ttl D] [--cas N] [--json]
       gojinn-node kv rm NAMESPACE KEY [--cas N]
       gojinn-node kv ls NAMESPACE [PREFIX] [--limit N] [--linearizable] [--json]`

// kvEntryJSON is what `kv get --json` prints.
type kvEntryJSON struct {
	Namespace string    `json:"namespace"`
	Key       string    `json:"key"`
	Version   uint64    `json:"version"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Value is set when the value is UTF-8 text, ValueBase64 otherwise.
	Value       *string `json:"value,omitempty"`
	ValueBase64 string  `json:"value_base64,omitempty"`
}

// kv runs `kv get|put|rm|ls`: the replicated KV through the admin API,
// which may use any namespace.
func (c cli) kv(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(c.stderr, kvUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("kv "+sub, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	var cf clientFlags
	cf.register(fs, c.env)
	ttl := fs.Duration("ttl", 0, "put: expire the key after this long (e.g. 30s, 24h); default never")
	var cas *uint64
	fs.Func("cas", "put, rm: apply only if the key's version is `N` (0: only if absent)", func(s string) error {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a version", s)
		}
		cas = &v
		return nil
	})
	linear := fs.Bool("linearizable", false, "get, ls: see every acknowledged write (the node asks the leader for a read index) instead of reading this node's replica as it is")
	limit := fs.Int("limit", 0, "ls: list at most N keys (default all)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	want := map[string][2]int{"get": {2, 2}, "put": {3, 3}, "rm": {2, 2}, "delete": {2, 2}, "ls": {1, 2}, "list": {1, 2}}
	n, ok := want[sub]
	if !ok {
		fmt.Fprintf(c.stderr, "gojinn-node kv: unknown subcommand %q (use get, put, rm or ls)\n%s\n", sub, kvUsage)
		return 2
	}
	if len(pos) < n[0] || len(pos) > n[1] {
		fmt.Fprintln(c.stderr, kvUsage)
		return 2
	}
	cl, err := cf.client()
	if err != nil {
		return c.fail(err)
	}
	consistency := cluster.ConsistencyLocal
	if *linear {
		consistency = cluster.ConsistencyLinearizable
	}
	ns := pos[0]
	switch sub {
	case "get":
		e, err := cl.KVGet(ctx, ns, pos[1], cluster.KVReadOptions{Consistency: consistency})
		if err != nil {
			return c.fail(err)
		}
		if cf.json {
			out := kvEntryJSON{Namespace: ns, Key: e.Key, Version: e.Version, ExpiresAt: e.ExpiresAt}
			if utf8.Valid(e.Value) {
				s := string(e.Value)
				out.Value = &s
			} else {
				out.ValueBase64 = base64.StdEncoding.EncodeToString(e.Value)
			}
			return c.printJSON(out)
		}
		if _, err := c.stdout.Write(e.Value); err != nil {
			return c.fail(err)
		}
		return 0
	case "put":
		value := []byte(pos[2])
		if pos[2] == "-" {
			in := c.stdin
			if in == nil {
				in = os.Stdin
			}
			if value, err = io.ReadAll(in); err != nil {
				return c.fail(fmt.Errorf("read the value from stdin: %w", err))
			}
		}
		v, err := cl.KVPut(ctx, ns, pos[1], value, cluster.KVWriteOptions{TTL: *ttl, CAS: cas})
		if err != nil {
			return c.fail(err)
		}
		if cf.json {
			return c.printJSON(cluster.KVPutResponse{Namespace: ns, Key: pos[1], Version: v})
		}
		fmt.Fprintf(c.stdout, "put %s/%s: version %d\n", ns, pos[1], v)
		return 0
	case "rm", "delete":
		if err := cl.KVDelete(ctx, ns, pos[1], cluster.KVWriteOptions{CAS: cas}); err != nil {
			return c.fail(err)
		}
		if cf.json {
			return c.printJSON(map[string]string{"namespace": ns, "deleted": pos[1]})
		}
		fmt.Fprintf(c.stdout, "deleted %s/%s\n", ns, pos[1])
		return 0
	}
	return c.kvList(ctx, cl, ns, pos[1:], consistency, *limit, cf.json)
}

// kvList prints the keys of ns with an optional prefix, page by page.
func (c cli) kvList(ctx context.Context, cl *cluster.Client, ns string, prefix []string, consistency cluster.Consistency, limit int, asJSON bool) int {
	opts := cluster.KVListOptions{Limit: cluster.MaxKVListLimit, Consistency: consistency}
	if len(prefix) > 0 {
		opts.Prefix = prefix[0]
	}
	var all cluster.KVListResponse
	for {
		if limit > 0 {
			opts.Limit = min(cluster.MaxKVListLimit, limit-len(all.Keys))
		}
		page, err := cl.KVList(ctx, ns, opts)
		if err != nil {
			return c.fail(err)
		}
		all.Namespace, all.Share = page.Namespace, page.Share
		all.Keys = append(all.Keys, page.Keys...)
		if page.Cursor == "" || (limit > 0 && len(all.Keys) >= limit) {
			all.Cursor = page.Cursor
			break
		}
		opts.Cursor = page.Cursor
	}
	if all.Keys == nil {
		all.Keys = []cluster.KVKeyInfo{}
	}
	if asJSON {
		return c.printJSON(all)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVERSION\tSIZE\tEXPIRES")
	for _, k := range all.Keys {
		exp := "-"
		if !k.ExpiresAt.IsZero() {
			exp = k.ExpiresAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", strconv.Quote(k.Key), k.Version, k.Size, exp)
	}
	_ = tw.Flush()
	if all.Cursor != "" {
		fmt.Fprintf(c.stderr, "(more keys follow; raise --limit to see them)\n")
	}
	return 0
}
