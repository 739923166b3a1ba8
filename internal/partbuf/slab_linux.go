package partbuf

import "syscall"

// mapSlab maps size bytes of anonymous memory outside the Go heap: the
// collector neither scans nor counts it, so the buffers no longer hold the
// heap at the soft memory limit (which had the GC running almost without
// pause: make abuse's create flood spent 41 % of the operator's CPU marking).
// Pages become resident as they are written.
func mapSlab(size int64) (*[]byte, bool) {
	b, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, false
	}
	return &b, true
}

// releasePages gives a slab's pages back to the kernel while keeping the
// mapping: a reader that still holds the slab (an HTTP transport may read a
// request body after the request returned) reads zeros instead of faulting.
func releasePages(b []byte) { _ = syscall.Madvise(b, syscall.MADV_DONTNEED) }

// unmapSlab ends a mapping no one can hold any more.
func unmapSlab(b []byte) { _ = syscall.Munmap(b) }
