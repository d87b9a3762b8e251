//go:build tools

// Package gojinn pins dependencies that packages under construction will import;
// the build tag keeps it out of every build. It goes once they do.
package gojinn

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/caddyserver/certmagic"
	_ "github.com/hashicorp/raft"
	_ "github.com/hashicorp/raft-boltdb/v2"
	_ "github.com/letsencrypt/pebble/v2/ca"
	_ "github.com/letsencrypt/pebble/v2/db"
	_ "github.com/letsencrypt/pebble/v2/va"
	_ "github.com/letsencrypt/pebble/v2/wfe"
	_ "github.com/quic-go/quic-go/http3"
)
