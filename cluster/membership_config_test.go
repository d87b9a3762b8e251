package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

func TestMembershipConfigValidate(t *testing.T) {
	ok := MembershipConfig{NodeName: "n1"}
	tests := []struct {
		name    string
		mutate  func(*MembershipConfig)
		wantErr string // substring; "" means valid
	}{
		{"defaults", func(*MembershipConfig) {}, ""},
		{"full", func(c *MembershipConfig) {
			c.BindAddr, c.AdvertiseAddr, c.Profile = "0.0.0.0:7946", "203.0.113.7:7946", ProfileWAN
			c.SecretKey = make([]byte, 32)
			c.Join = []string{"10.0.0.1:7946", "10.0.0.2", "seed.example.com", "seed.example.com:7000", "[2001:db8::1]:7946", "2001:db8::2"}
			c.RetryMax, c.RetryInterval, c.DeadNodeReclaimTime = 5, 2*time.Second, time.Minute
			c.Meta = NodeMeta{Role: RoleServer, Region: "eu", Version: "v1", RaftAddr: "10.0.0.1:7947", APIAddr: "10.0.0.1:8080"}
		}, ""},
		{"local profile and port 0", func(c *MembershipConfig) { c.BindAddr, c.Profile = "127.0.0.1:0", ProfileLocal }, ""},
		{"bare bind IP", func(c *MembershipConfig) { c.BindAddr = "10.0.0.1" }, ""},
		{"advertise IP without port", func(c *MembershipConfig) { c.AdvertiseAddr = "203.0.113.7" }, ""},
		{"16 and 24 byte keys", func(c *MembershipConfig) { c.SecretKey = make([]byte, 24) }, ""},
		{"no name", func(c *MembershipConfig) { c.NodeName = "" }, "NodeName is required"},
		{"bad name", func(c *MembershipConfig) { c.NodeName = "a b" }, "NodeName"},
		{"long name", func(c *MembershipConfig) { c.NodeName = strings.Repeat("n", 129) }, "NodeName"},
		{"bind without port", func(c *MembershipConfig) { c.BindAddr = "host:" }, "BindAddr"},
		{"bind bad port", func(c *MembershipConfig) { c.BindAddr = "127.0.0.1:99999" }, "port must be"},
		{"bind :: without advertise", func(c *MembershipConfig) { c.BindAddr = "[::]:7946" }, "set AdvertiseAddr"},
		{"bind :: with advertise", func(c *MembershipConfig) { c.BindAddr, c.AdvertiseAddr = "[::]:7946", "2001:db8::7" }, ""},
		{"bind DNS name", func(c *MembershipConfig) { c.BindAddr = "localhost:7946" }, "must be an IP"},
		{"advertise DNS name", func(c *MembershipConfig) { c.AdvertiseAddr = "node.example.com:7946" }, "AdvertiseAddr"},
		{"advertise unspecified", func(c *MembershipConfig) { c.AdvertiseAddr = "0.0.0.0:7946" }, "AdvertiseAddr"},
		{"advertise port 0", func(c *MembershipConfig) { c.AdvertiseAddr = "10.0.0.1:0" }, "port must be"},
		{"unknown profile", func(c *MembershipConfig) { c.Profile = "fast" }, `Profile "fast"`},
		{"short key", func(c *MembershipConfig) { c.SecretKey = make([]byte, 10) }, "10 bytes"},
		{"empty key", func(c *MembershipConfig) { c.SecretKey = []byte{} }, "0 bytes"},
		{"meta too large", func(c *MembershipConfig) { c.Meta.Region = strings.Repeat("x", 520) }, "512"},
		{"meta control char", func(c *MembershipConfig) { c.Meta.Version = "v1\n" }, "control character"},
		{"empty seed", func(c *MembershipConfig) { c.Join = []string{""} }, "Join entry"},
		{"seed with space", func(c *MembershipConfig) { c.Join = []string{"a b:7946"} }, "Join entry"},
		{"seed port 0", func(c *MembershipConfig) { c.Join = []string{"10.0.0.1:0"} }, "port must be"},
		{"seed bad port", func(c *MembershipConfig) { c.Join = []string{"seed:x"} }, "port must be"},
		{"seed name prefix", func(c *MembershipConfig) { c.Join = []string{"node/10.0.0.1"} }, "Join entry"},
		{"negative retries", func(c *MembershipConfig) { c.RetryMax = -1 }, "RetryMax"},
		{"negative interval", func(c *MembershipConfig) { c.RetryInterval = -time.Second }, "RetryInterval"},
		{"negative reclaim", func(c *MembershipConfig) { c.DeadNodeReclaimTime = -time.Second }, "DeadNodeReclaimTime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
			if !errors.Is(err, storage.ErrInvalid) {
				t.Fatalf("Validate() = %v, does not wrap storage.ErrInvalid", err)
			}
		})
	}
}

func TestMembershipConfigProfiles(t *testing.T) {
	for _, p := range []string{"", ProfileLAN, ProfileWAN, ProfileLocal} {
		c := MembershipConfig{NodeName: "n1", Profile: p, BindAddr: "10.0.0.1", AdvertiseAddr: "203.0.113.9"}.withDefaults()
		mc, err := c.memberlistConfig()
		if err != nil {
			t.Fatalf("%q: %v", p, err)
		}
		if mc.BindAddr != "10.0.0.1" || mc.BindPort != 7946 || mc.AdvertiseAddr != "203.0.113.9" || mc.AdvertisePort != 7946 {
			t.Errorf("%q: bind %s:%d advertise %s:%d", p, mc.BindAddr, mc.BindPort, mc.AdvertiseAddr, mc.AdvertisePort)
		}
		if mc.DeadNodeReclaimTime != DefaultDeadNodeReclaimTime {
			t.Errorf("%q: DeadNodeReclaimTime %v", p, mc.DeadNodeReclaimTime)
		}
		if mc.Keyring != nil {
			t.Errorf("%q: a keyring without a key", p)
		}
	}
	lan, _ := MembershipConfig{NodeName: "n", Profile: ProfileLAN}.withDefaults().memberlistConfig()
	wan, _ := MembershipConfig{NodeName: "n", Profile: ProfileWAN}.withDefaults().memberlistConfig()
	local, _ := MembershipConfig{NodeName: "n", Profile: ProfileLocal}.withDefaults().memberlistConfig()
	if local.ProbeInterval >= lan.ProbeInterval || lan.ProbeInterval >= wan.ProbeInterval {
		t.Errorf("probe intervals local %v, lan %v, wan %v: want increasing", local.ProbeInterval, lan.ProbeInterval, wan.ProbeInterval)
	}
}
