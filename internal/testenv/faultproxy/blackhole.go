package faultproxy

import (
	"fmt"
	"net"
	"syscall"
)

// Blackhole is a loopback address that drops connection attempts, as a host
// that silently drops packets does: a listener whose accept queue is full, so
// the kernel ignores every further SYN and a dial hangs until its timeout.
type Blackhole struct {
	Addr string
	fd   int
	fill net.Conn
}

// NewBlackhole opens one.
func NewBlackhole() (*Blackhole, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		_ = syscall.Close(fd)
		return nil, err
	}
	if err := syscall.Listen(fd, 0); err != nil { // a backlog of one, never accepted
		_ = syscall.Close(fd)
		return nil, err
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		_ = syscall.Close(fd)
		return nil, err
	}
	b := &Blackhole{Addr: fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port), fd: fd}
	if b.fill, err = net.Dial("tcp", b.Addr); err != nil { // takes the only place in the queue
		_ = syscall.Close(fd)
		return nil, err
	}
	return b, nil
}

// Close releases it.
func (b *Blackhole) Close() {
	_ = b.fill.Close()
	_ = syscall.Close(b.fd)
}
