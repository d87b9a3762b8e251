package cluster

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/gojinn/gojinn/storage"
)

// Gossip key rotation. memberlist encrypts with the keyring's primary key
// and decrypts with any installed key, so a key is replaced without
// downtime in three rounds, each finished on every node before the next
// starts: InstallKey(new), UseKey(new), RemoveKey(old). DESIGN.md
// (Membership) has the procedure.

// InstallKey adds key to this node's keyring: it decrypts with it from
// now on but still encrypts with the current primary. Installing a key
// twice is a no-op.
func (m *Membership) InstallKey(key []byte) error {
	if err := m.checkKeyOp(key); err != nil {
		return err
	}
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	if err := m.keyring.AddKey(slices.Clone(key)); err != nil {
		return fmt.Errorf("gossip keyring: install key %s: %w", keyFingerprint(key), err)
	}
	m.log.Info("gossip keyring: key installed", "key", keyFingerprint(key))
	return nil
}

// UseKey makes an installed key the primary one, which this node encrypts
// with. Every node must have installed it first, or they cannot read this
// node's gossip.
func (m *Membership) UseKey(key []byte) error {
	if err := m.checkKeyOp(key); err != nil {
		return err
	}
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	if !slices.ContainsFunc(m.keyring.GetKeys(), func(k []byte) bool { return bytes.Equal(k, key) }) {
		return fmt.Errorf("gossip keyring: key %s is not installed on this node; InstallKey it on every node first: %w", keyFingerprint(key), storage.ErrInvalid)
	}
	if err := m.keyring.UseKey(key); err != nil {
		return fmt.Errorf("gossip keyring: use key %s: %w", keyFingerprint(key), err)
	}
	m.log.Info("gossip keyring: primary key changed", "key", keyFingerprint(key))
	return nil
}

// RemoveKey drops a key from this node's keyring. The primary key cannot
// be removed (UseKey another first); removing a key that is not installed
// is a no-op.
func (m *Membership) RemoveKey(key []byte) error {
	if err := m.checkKeyOp(key); err != nil {
		return err
	}
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	keys := cloneKeys(m.keyring.GetKeys())
	i := slices.IndexFunc(keys, func(k []byte) bool { return bytes.Equal(k, key) })
	switch {
	case i < 0:
		return nil
	case i == 0:
		return fmt.Errorf("gossip keyring: key %s is the primary key; switch every node to the new key with UseKey before removing it: %w", keyFingerprint(key), storage.ErrInvalid)
	}
	// memberlist's Keyring.RemoveKey shifts the keys after the removed one
	// down inside the slice that packet decryption may be reading at that
	// moment, a data race. Removing the last key moves nothing, so the
	// keys after key are taken off from the end and put back afterwards;
	// a message under one of them arriving in between is dropped like any
	// lost packet.
	for j := len(keys) - 1; j >= i; j-- {
		if err := m.keyring.RemoveKey(keys[j]); err != nil {
			return fmt.Errorf("gossip keyring: remove key %s: %w", keyFingerprint(keys[j]), err)
		}
	}
	for _, k := range keys[i+1:] {
		if err := m.keyring.AddKey(k); err != nil {
			return fmt.Errorf("gossip keyring: reinstall key %s: %w", keyFingerprint(k), err)
		}
	}
	m.log.Info("gossip keyring: key removed", "key", keyFingerprint(key))
	return nil
}

// KeyFingerprints lists the installed keys, primary first, as the first 8
// bytes of each key's sha256 in hex (safe to log and show). It is nil when
// gossip is not encrypted.
func (m *Membership) KeyFingerprints() []string {
	if m.keyring == nil {
		return nil
	}
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	var out []string
	for _, k := range m.keyring.GetKeys() {
		out = append(out, keyFingerprint(k))
	}
	return out
}

// checkKeyOp checks that the keyring can change and key is well formed.
func (m *Membership) checkKeyOp(key []byte) error {
	if m.keyring == nil {
		return fmt.Errorf("gossip keyring: gossip on this node is not encrypted (no SecretKey at start) and encryption cannot be switched on while running: restart every node with a key: %w", storage.ErrInvalid)
	}
	if m.closed.Load() {
		return ErrMembershipClosed
	}
	return validateGossipKey(key)
}

func cloneKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = slices.Clone(k)
	}
	return out
}
