package storage

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Command operations.
const (
	// OpDeploy adds a new version of a function (creating the function if
	// needed) and makes it active.
	OpDeploy = "deploy"
	// OpRollback makes an existing version of a function active again.
	OpRollback = "rollback"
	// OpRemove deletes a function and its versions; its version numbers
	// are not reused.
	OpRemove = "remove"
)

// Execution modes and memory reset policies a Spec may name. The runtime
// defines what they do; storage only checks the names.
const (
	// ModeIsolated runs each request in a fresh sandbox (the default).
	ModeIsolated = "isolated"
	// ModePooled reuses warm instances that export a handler.
	ModePooled = "pooled"

	// ResetNone keeps a pooled instance's memory between requests.
	ResetNone = "none"
	// ResetAuto lets the runtime choose how to reset memory.
	ResetAuto = "auto"
	// ResetCopy restores memory by copying the post-init snapshot.
	ResetCopy = "copy"
	// ResetCoW restores memory copy-on-write, paying only dirtied pages.
	ResetCoW = "cow"
)

// Bounds on what one deploy may carry, so a Raft entry stays small.
const (
	// MaxEnvBytes bounds the sum of the lengths of a spec's env keys and
	// values.
	MaxEnvBytes = 64 << 10
	// MaxRoutes bounds the number of routes of one function.
	MaxRoutes = 256
)

// Command is one change to the registry: the payload of a Raft log entry,
// encoded as JSON. Every node applies the same commands in the same order
// and must reach the same state, so a command carries everything Apply
// needs, including the time.
type Command struct {
	// Op is OpDeploy, OpRollback or OpRemove.
	Op string `json:"op"`
	// Name is the function's name.
	Name string `json:"name"`
	// Spec is the new version, for OpDeploy only.
	Spec *Spec `json:"spec,omitempty"`
	// Version is the version to roll back to, for OpRollback only; 0 means
	// the version that was active before the current one.
	Version int64 `json:"version,omitempty"`
	// At is the proposer's clock when the command was proposed; deploys
	// record it as the version's DeployedAt.
	At time.Time `json:"at"`
}

// EncodeCommand validates c and encodes it for a Raft log entry.
func EncodeCommand(c Command) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s command for %q: %w", c.Op, c.Name, err)
	}
	return b, nil
}

// DecodeCommand decodes and validates a command from a Raft log entry.
// Unknown JSON fields are ignored, so a newer proposer's optional fields do
// not stop an older node (adding a field that changes the result of Apply
// needs a new Op instead).
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return Command{}, fmt.Errorf("%w: registry command is not valid JSON: %v", ErrInvalid, err)
	}
	if err := c.Validate(); err != nil {
		return Command{}, err
	}
	return c, nil
}

// Validate checks a command's fields for its Op.
func (c Command) Validate() error {
	switch c.Op {
	case OpDeploy:
		if c.Spec == nil {
			return fmt.Errorf("%w: deploy of %q has no spec", ErrInvalid, c.Name)
		}
		return ValidateSpec(c.Name, *c.Spec)
	case OpRollback:
		if c.Version < 0 {
			return fmt.Errorf("%w: rollback of %q: version %d must be >= 1, or 0 for the previous version", ErrInvalid, c.Name, c.Version)
		}
		return ValidateName(c.Name)
	case OpRemove:
		return ValidateName(c.Name)
	default:
		return fmt.Errorf("%w: unknown registry command %q (want %q, %q or %q)", ErrInvalid, clip(c.Op), OpDeploy, OpRollback, OpRemove)
	}
}

// ValidateSpec checks a deploy of spec under name before it is proposed,
// and again when it is applied. Errors wrap ErrInvalid and name the field.
//
// Rules may only be tightened here for new proposals: an entry already in a
// Raft log must keep applying the same way on every node, so a stricter
// check that would reject old entries needs a new command Op.
func ValidateSpec(name string, spec Spec) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := ValidateSHA256(spec.SHA256); err != nil {
		return fmt.Errorf("spec.sha256: %w", err)
	}
	if spec.Size <= 0 {
		return fmt.Errorf("%w: spec.size %d must be the module's length in bytes (> 0)", ErrInvalid, spec.Size)
	}
	switch spec.Mode {
	case "", ModeIsolated, ModePooled:
	default:
		return fmt.Errorf("%w: spec.mode %q must be %q or %q (empty means %s)", ErrInvalid, clip(spec.Mode), ModeIsolated, ModePooled, ModeIsolated)
	}
	switch spec.Reset {
	case "", ResetNone, ResetAuto, ResetCopy, ResetCoW:
	default:
		return fmt.Errorf("%w: spec.reset %q must be one of %q, %q, %q, %q", ErrInvalid, clip(spec.Reset), ResetNone, ResetAuto, ResetCopy, ResetCoW)
	}
	if err := validateEnv(spec.Env); err != nil {
		return err
	}
	if err := validateRoutes(spec.Routes); err != nil {
		return err
	}
	return validateLimits(spec.Limits)
}

func validateEnv(env map[string]string) error {
	total := 0
	for k, v := range env {
		// Values may be secrets: messages name the key only.
		if k == "" {
			return fmt.Errorf("%w: spec.env has an empty key", ErrInvalid)
		}
		for i := 0; i < len(k); i++ {
			if k[i] == '=' || k[i] == 0 {
				return fmt.Errorf("%w: spec.env key %q must not contain '=' or NUL", ErrInvalid, clip(k))
			}
		}
		for i := 0; i < len(v); i++ {
			if v[i] == 0 {
				return fmt.Errorf("%w: spec.env value of %q must not contain NUL", ErrInvalid, clip(k))
			}
		}
		total += len(k) + len(v)
	}
	if total > MaxEnvBytes {
		return fmt.Errorf("%w: spec.env holds %d bytes, more than the limit of %d (keep large configuration in KV or the module)", ErrInvalid, total, MaxEnvBytes)
	}
	return nil
}

func validateRoutes(routes []Route) error {
	if len(routes) > MaxRoutes {
		return fmt.Errorf("%w: spec.routes has %d routes, more than the limit of %d", ErrInvalid, len(routes), MaxRoutes)
	}
	for i, r := range routes {
		if r.Path != "" && r.Path[0] != '/' {
			return fmt.Errorf("%w: spec.routes[%d].path %q must start with '/'", ErrInvalid, i, clip(r.Path))
		}
		for j := 0; j < len(r.Host); j++ {
			if c := r.Host[j]; c <= ' ' || c == '/' || c >= 0x7f {
				return fmt.Errorf("%w: spec.routes[%d].host %q must be a host name pattern without spaces or '/'", ErrInvalid, i, clip(r.Host))
			}
		}
		for j, m := range r.Methods {
			if !isToken(m) {
				return fmt.Errorf("%w: spec.routes[%d].methods[%d] %q is not an HTTP method", ErrInvalid, i, j, clip(m))
			}
		}
	}
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110 section 5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func validateLimits(l Limits) error {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"timeout", int64(l.Timeout)},
		{"cpu_time", int64(l.CPUTime)},
		{"max_request_body", l.MaxRequestBody},
		{"max_response_body", l.MaxResponseBody},
		{"max_instances", int64(l.MaxInstances)},
		{"queue_timeout", int64(l.QueueTimeout)},
	} {
		if f.v < 0 {
			return fmt.Errorf("%w: spec.limits.%s must not be negative (0 means the default)", ErrInvalid, f.name)
		}
	}
	return nil
}
