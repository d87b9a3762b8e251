//go:build !wasip1

package main

func abuse(string) int32 { return 0 }
