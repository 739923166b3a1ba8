package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// cpuClasses names the processes whose CPU a phase accounts for, by the
// command name the kernel shows; "victim" is this process (the run and the
// victim's client), "attacker" its child.
var cpuClasses = map[string]string{
	"manager": "operator", "kube-apiserver": "API server + etcd", "etcd": "API server + etcd",
	"versitygw": "S3 (versitygw)", "postgres": "PostgreSQL", "redis-server": "Redis",
}

// cpuTicks sums user + system CPU ticks of every process, by class.
func cpuTicks() map[string]int64 {
	out := map[string]int64{}
	self := os.Getpid()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		raw, err := os.ReadFile(filepath.Join(d, "stat")) //nolint:gosec // procfs
		if err != nil {
			continue
		}
		s := string(raw)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		comm := s[open+1 : closing]
		fields := strings.Fields(s[closing+1:])
		if len(fields) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(fields[11], 10, 64)
		stime, _ := strconv.ParseInt(fields[12], 10, 64)
		pid, _ := strconv.Atoi(filepath.Base(d))
		class, ok := "", false
		for prefix, c := range cpuClasses {
			if strings.HasPrefix(comm, prefix) {
				class, ok = c, true
			}
		}
		switch {
		case pid == self:
			class, ok = "victim + run", true
		case comm == "abuse" || strings.HasPrefix(comm, "abuse"):
			class, ok = "attacker", true
		}
		if ok {
			out[class] += utime + stime
		}
	}
	return out
}

// clockTicks is the kernel's USER_HZ, 100 on Linux.
const clockTicks = 100

// cpuUse is the cores each class used between two cpuTicks, over seconds.
func cpuUse(before, after map[string]int64, seconds float64) map[string]float64 {
	out := map[string]float64{}
	for class, t := range after {
		if d := t - before[class]; d > 0 {
			out[class] = float64(d) / clockTicks / seconds
		}
	}
	return out
}

// formatCPU renders cores by class, largest first.
func formatCPU(m map[string]float64) string {
	type kv struct {
		k string
		v float64
	}
	var l []kv
	for k, v := range m {
		if v >= 0.05 {
			l = append(l, kv{k, v})
		}
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v })
	var parts []string
	for _, x := range l {
		parts = append(parts, fmt.Sprintf("%s %.2f", x.k, x.v))
	}
	return strings.Join(parts, ", ")
}
