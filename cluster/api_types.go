package cluster

import (
	"time"

	"github.com/gojinn/gojinn/storage"
)

// DeployRequest is the body of POST /v1/functions/{name}: the spec plus how
// long to wait for this node to serve the new version.
type DeployRequest struct {
	storage.Spec
	// Wait asks the node to answer only once it serves the new version.
	// Absent means true.
	Wait *bool `json:"wait,omitempty"`
	// WaitTimeout bounds the wait; zero means the node's default (60 s),
	// at most MaxWaitTimeout.
	WaitTimeout storage.Duration `json:"wait_timeout,omitempty"`
}

// RollbackRequest is the body of POST /v1/functions/{name}/rollback. An
// empty body is a rollback to the previously active version.
type RollbackRequest struct {
	// Version to make active; 0 or absent means the previously active one.
	Version int64 `json:"version,omitempty"`
	// Wait and WaitTimeout work as in DeployRequest.
	Wait        *bool            `json:"wait,omitempty"`
	WaitTimeout storage.Duration `json:"wait_timeout,omitempty"`
}

// FunctionSummary is one row of GET /v1/functions: the function and its
// active version at a glance.
type FunctionSummary struct {
	Name string `json:"name"`
	// Active is the serving version.
	Active int64 `json:"active"`
	// Mode is the active version's mode; empty means isolated.
	Mode string `json:"mode,omitempty"`
	// Routes are the active version's routes.
	Routes []storage.Route `json:"routes"`
	// SHA256 and Size describe the active version's module.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// DeployedAt is when the active version was deployed.
	DeployedAt time.Time `json:"deployed_at"`
	// Versions is how many versions the function has.
	Versions int `json:"versions"`
}

// FunctionList is the body of GET /v1/functions.
type FunctionList struct {
	Functions []FunctionSummary `json:"functions"`
}

// VersionInfo is one entry of GET /v1/functions/{name}/versions: a version
// (env values redacted) and whether it serves.
type VersionInfo struct {
	storage.Version
	Active bool `json:"active"`
}

// VersionList is the body of GET /v1/functions/{name}/versions, oldest
// version first.
type VersionList struct {
	Name     string        `json:"name"`
	Active   int64         `json:"active"`
	Versions []VersionInfo `json:"versions"`
}

// ForceLeaveResult is the body of a successful DELETE /v1/members/{name}:
// what the force-leave changed.
type ForceLeaveResult struct {
	// Name is the member's name (its node ID).
	Name string `json:"name"`
	// Status is what gossip said of the member before: dead, left, or
	// unknown when only Raft listed it.
	Status string `json:"status"`
	// RaftRole is the member's Raft role before: voter, non-voter, or
	// none when Raft did not list it.
	RaftRole string `json:"raft_role"`
	// RemovedFromRaft says whether the Raft configuration changed.
	RemovedFromRaft bool `json:"removed_from_raft"`
}

// BlobInfo is the body of a successful PUT /v1/blobs/{sha256}.
type BlobInfo struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// redactVersion returns v with every env value replaced by "", keeping the
// keys. It copies the map: v's may be the registry's own.
func redactVersion(v storage.Version) storage.Version {
	if v.Env == nil {
		return v
	}
	env := make(map[string]string, len(v.Env))
	for k := range v.Env {
		env[k] = ""
	}
	v.Env = env
	return v
}

// redactFunction returns f with every version redacted, sharing nothing
// mutable with f.
func redactFunction(f storage.Function) storage.Function {
	vs := make([]storage.Version, len(f.Versions))
	for i, v := range f.Versions {
		vs[i] = redactVersion(v)
	}
	f.Versions = vs
	return f
}

// summarize returns f's row in the function list.
func summarize(f storage.Function) FunctionSummary {
	s := FunctionSummary{Name: f.Name, Active: f.Active, Versions: len(f.Versions), Routes: []storage.Route{}}
	if v, ok := f.ActiveVersion(); ok {
		s.Mode, s.SHA256, s.Size, s.DeployedAt = v.Mode, v.SHA256, v.Size, v.DeployedAt
		if v.Routes != nil {
			s.Routes = v.Routes
		}
	}
	return s
}
