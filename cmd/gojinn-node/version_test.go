package main

import (
	"runtime/debug"
	"testing"
)

func TestBuildVersion(t *testing.T) {
	info := func(main string, settings ...string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/gojinn/gojinn", Version: main}}
			for i := 0; i+1 < len(settings); i += 2 {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
			}
			return bi, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	for _, c := range []struct {
		name, linked string
		read         func() (*debug.BuildInfo, bool)
		want         string
	}{
		{"set by the linker", "v0.3.0-2-gabc", info("v0.2.0"), "v0.3.0-2-gabc"},
		{"go install @version", "dev", info("v0.2.0"), "v0.2.0"},
		{"git checkout", "dev", info("(devel)", "vcs.revision", "1161602d3c1b2a9e8f7d6c5b4a3928170615f4e3", "vcs.modified", "false"), "dev-1161602d3c1b"},
		{"dirty checkout", "dev", info("(devel)", "vcs.revision", "1161602d3c1b2a9e8f7d6c5b4a3928170615f4e3", "vcs.modified", "true"), "dev-1161602d3c1b-dirty"},
		{"no VCS stamp", "dev", info("(devel)"), "dev"},
		{"no build info", "dev", none, "dev"},
	} {
		if got := buildVersion(c.linked, c.read); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
