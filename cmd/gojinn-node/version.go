package main

import "runtime/debug"

// version names this build in `gojinn-node version`, the ready banner,
// gossip (members), traces and /v1/status. `make build` sets it at link
// time to `git describe` (-X main.version=...); a plain `go build` or
// `go install` gets it from the build information Go records (init).
var version = "dev"

func init() { version = buildVersion(version, debug.ReadBuildInfo) }

// buildVersion returns v when the linker set it, else the module version
// of a `go install ...@vX` build, else "dev-" and the VCS revision Go
// stamped into a build from a git checkout (its first 12 hex digits, and
// "-dirty" with uncommitted changes), else "dev".
func buildVersion(v string, read func() (*debug.BuildInfo, bool)) string {
	if v != "dev" {
		return v
	}
	info, ok := read()
	if !ok {
		return v
	}
	if mv := info.Main.Version; mv != "" && mv != "(devel)" {
		return mv
	}
	var rev string
	var dirty bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return v
	}
	v = "dev-" + rev[:min(12, len(rev))]
	if dirty {
		v += "-dirty"
	}
	return v
}
