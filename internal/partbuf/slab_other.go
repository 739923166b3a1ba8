//go:build !linux

package partbuf

// Elsewhere slabs live on the Go heap.
func mapSlab(size int64) (*[]byte, bool) { b := make([]byte, size); return &b, true }
func releasePages([]byte)                {}
func unmapSlab([]byte)                   {}
