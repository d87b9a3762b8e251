package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Route is where a function is reachable: a host pattern, a path pattern and
// optional methods. The edge parses and validates the patterns; storage only
// keeps them.
type Route struct {
	// Host is "", "*", "example.com" or "*.example.com".
	Host string `json:"host,omitempty"`
	// Path is "/exact" or "/prefix/*"; empty means every path.
	Path string `json:"path,omitempty"`
	// Methods restricts the route to these methods; empty means all.
	Methods []string `json:"methods,omitempty"`
}

// Duration is a time.Duration that encodes as a Go duration string ("1.5s")
// in JSON, so specs stay readable in the API and in snapshots.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON implements json.Unmarshaler. It accepts a duration string
// or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w (write e.g. \"500ms\" or \"10s\")", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration: want a string like \"10s\", got %s", b)
	}
	*d = Duration(n)
	return nil
}

// Limits bound one function's invocations. Zero fields take the runtime's
// defaults (docs/api.md lists them).
type Limits struct {
	MemoryBytes     uint64   `json:"memory_bytes,omitempty"`
	Timeout         Duration `json:"timeout,omitempty"`
	CPUTime         Duration `json:"cpu_time,omitempty"`
	MaxRequestBody  int64    `json:"max_request_body,omitempty"`
	MaxResponseBody int64    `json:"max_response_body,omitempty"`
	MaxInstances    int      `json:"max_instances,omitempty"`
	QueueTimeout    Duration `json:"queue_timeout,omitempty"`
}

// Spec is what a deploy carries: the module (by hash) and how to run it.
type Spec struct {
	// SHA256 is the lower-case hex sha256 of the module bytes; the blob
	// store holds the bytes under this key.
	SHA256 string `json:"sha256"`
	// Size is the module's length in bytes.
	Size int64 `json:"size"`
	// Mode is "isolated" or "pooled"; empty means isolated.
	Mode string `json:"mode,omitempty"`
	// Reset is "none", "auto", "copy" or "cow" for pooled functions.
	Reset string `json:"reset,omitempty"`
	// Env is the guest's environment. Values may be secrets: the API shows
	// keys only and nothing logs them.
	Env map[string]string `json:"env,omitempty"`
	// Routes are where the function is reachable.
	Routes []Route `json:"routes,omitempty"`
	// Limits bound each invocation.
	Limits Limits `json:"limits,omitzero"`
}

// Version is one deployed version of a function. Versions are numbered from
// 1 per function and never reused, also after a remove.
type Version struct {
	Version int64 `json:"version"`
	Spec
	// DeployedAt is the leader's clock when the deploy was proposed.
	DeployedAt time.Time `json:"deployed_at"`
}

// Function is a function's history and which version serves.
type Function struct {
	Name string `json:"name"`
	// Active is the version that serves.
	Active int64 `json:"active"`
	// Versions are every version deployed, oldest first.
	Versions []Version `json:"versions"`
}

// ActiveVersion returns the version that serves.
func (f *Function) ActiveVersion() (Version, bool) {
	return f.FindVersion(f.Active)
}

// FindVersion returns version v of f.
func (f *Function) FindVersion(v int64) (Version, bool) {
	for _, x := range f.Versions {
		if x.Version == v {
			return x, true
		}
	}
	return Version{}, false
}

// Sentinel errors. Errors from this package wrap one of these.
var (
	// ErrFunctionNotFound means no function of that name is registered.
	ErrFunctionNotFound = errors.New("function not found")
	// ErrVersionNotFound means the function has no such version.
	ErrVersionNotFound = errors.New("version not found")
	// ErrBlobNotFound means no module with that sha256 is stored.
	ErrBlobNotFound = errors.New("module blob not found")
	// ErrHashMismatch means uploaded bytes do not hash to the claimed sha256.
	ErrHashMismatch = errors.New("module bytes do not match their sha256")
	// ErrInvalid means a name, spec or command failed validation.
	ErrInvalid = errors.New("invalid")
	// ErrRouteConflict means a deploy or rollback was refused because the
	// version's routes would match the same requests as another
	// function's active routes (see RouteCheck). Nothing changed.
	ErrRouteConflict = errors.New("route conflict")
)

// MaxNameLen is the longest function name.
const MaxNameLen = 63

// ValidateName checks a function name: 1 to 63 characters of a-z, 0-9 and
// '-', starting with a letter or digit, so names are safe in URLs, file
// names, metric labels and DNS labels.
func ValidateName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w: function name %q must be 1 to %d characters", ErrInvalid, name, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0
		if !ok {
			return fmt.Errorf("%w: function name %q: use lower-case letters, digits and '-' (not first)", ErrInvalid, name)
		}
	}
	return nil
}
