// Command pause is the Pod sandbox's process for the test cluster
// (internal/testenv/localenv.Cluster): it waits for SIGTERM or SIGINT and exits, as
// Kubernetes' pause image does. No registry is reachable here, so `make
// test-cluster` builds it into an image with ../ (-name pause).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
