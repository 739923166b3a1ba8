package localenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// NetNS is a network namespace of the test run's own (`ip netns add`): the
// single-node cluster's kubelet, container runtime and Pods live in it, so
// their addresses exist nowhere else on the machine. The test process stays
// outside and reaches in with Dial and Listen, which open their sockets from
// a thread that has joined the namespace.
type NetNS struct {
	Name string
	Path string // /var/run/netns/<name>
}

// NewNetNS creates a namespace with its loopback up and a node address
// (nodeCIDR on a veth pair inside it, with the default route through it:
// kubelet takes its node IP from the default route).
func NewNetNS(name, nodeCIDR string) (*NetNS, error) {
	n := &NetNS{Name: name, Path: filepath.Join("/var/run/netns", name)}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %w: %s", name, err, out)
	}
	ip, _, err := net.ParseCIDR(nodeCIDR)
	if err != nil {
		_ = n.Delete()
		return nil, err
	}
	gw := ip.To4()
	gw = net.IPv4(gw[0], gw[1], gw[2], gw[3]+1)
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "node0", "type", "veth", "peer", "name", "node1"},
		{"addr", "add", nodeCIDR, "dev", "node0"},
		{"link", "set", "node0", "up"},
		{"link", "set", "node1", "up"},
		{"route", "add", "default", "via", gw.String(), "dev", "node0", "onlink"},
	} {
		if out, err := n.Command("ip", args...).CombinedOutput(); err != nil {
			_ = n.Delete()
			return nil, fmt.Errorf("ip %s in %s: %w: %s", strings.Join(args, " "), name, err, out)
		}
	}
	return n, nil
}

// Command runs name inside the namespace. nsenter joins the network
// namespace only: `ip netns exec` would also remount /sys, hiding the cgroup
// mounts kubelet and runc need.
func (n *NetNS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + n.Path, "--", name}, args...)...) //nolint:gosec // the test's own commands
}

// Delete removes the namespace (processes still in it keep it alive until
// they exit).
func (n *NetNS) Delete() error {
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", n.Name, err, out)
	}
	return nil
}

// inside runs f on a thread that has joined the namespace, then returns the
// thread to the machine's namespace. The thread must not simply exit (a
// locked goroutine that ends takes its thread with it): processes this test
// started from that thread, with a parent-death signal, would be killed with
// it — kubelet and containerd died that way the first time.
func (n *NetNS) inside(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(n.Path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", n.Path, err)
			return
		}
		err = f()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked and ends with this goroutine
		errc <- err
	}()
	return <-errc
}

// DialContext connects to addr as seen from inside the namespace (for
// http.Transport and rest.Config).
func (n *NetNS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.inside(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen listens on addr inside the namespace.
func (n *NetNS) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.inside(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// Forward makes target (an address outside, e.g. the machine's PostgreSQL on
// loopback) reachable at listen inside the namespace, over loopback only. It
// stops when the returned function is called.
func (n *NetNS) Forward(listen, target string) (func(), error) {
	l, err := n.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer out.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
				go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return func() { _ = l.Close(); wg.Wait() }, nil
}
