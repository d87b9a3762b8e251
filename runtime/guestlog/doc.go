// Package guestlog keeps the recent log lines of every function in memory, hands new ones to followers and forwards each to the node's log.
package guestlog
