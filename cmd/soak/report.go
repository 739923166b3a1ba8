package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mocs-dev/upload-operator/internal/testenv/chart"

	"github.com/mocs-dev/upload-operator/internal/testenv/soakcheck"
)

// bucket is the width of one throughput sample.
const bucket = 5 * time.Second

// summary is one run's outcome: printed, and saved by -record.
type summary struct {
	Seed         uint64                    `json:"seed"`
	Date         string                    `json:"date"`
	LoadSeconds  float64                   `json:"loadSeconds"`
	TotalSeconds float64                   `json:"totalSeconds"` // until settled
	Clients      int                       `json:"clients"`
	Settings     map[string]string         `json:"settings"`
	Ops          map[string]map[string]int `json:"ops"`
	Faults       map[string]int            `json:"faults"`
	Windows      []window                  `json:"windows"`
	Throughput   []float64                 `json:"throughputMBs"` // per bucket
	Sessions     map[string]int            `json:"sessions"`      // final status → count
	PartsAcked   int                       `json:"partsAcked"`
	BytesAcked   int64                     `json:"bytesAcked"`
	MOCs         int                       `json:"mocs"`
	PartsChecked int                       `json:"partsChecked"`
	PeakRSSMiB   map[string]int64          `json:"peakRSSMiB"`
	PeakMix      string                    `json:"peakMix"` // the highest replica's highest sample
	RSSLimitMiB  int64                     `json:"rssLimitMiB"`
	Violations   []string                  `json:"violations"`
}

// window is a fault in seconds from the start of the load.
type window struct {
	Kind   string  `json:"kind"`
	Target string  `json:"target"`
	From   float64 `json:"from"`
	To     float64 `json:"to"`
}

func summarize(h *history, final soakcheck.Final, violations []soakcheck.Violation, peaks map[string]int64, mix map[string]string, s settings,
	start, loadEnd, settled time.Time) *summary {
	sum := &summary{Seed: *seed, Date: start.UTC().Format("2006-01-02"), LoadSeconds: loadEnd.Sub(start).Seconds(),
		TotalSeconds: settled.Sub(start).Seconds(), Clients: *clients,
		Settings: map[string]string{"SESSION_TTL": s.SessionTTL.String(), "STALE_LOCK_AFTER": s.StaleLock.String(),
			"PART_BUFFER_BUDGET_BYTES": fmt.Sprintf("%d MiB", s.BufferBudget>>20), "LEASE_DURATION": s.Lease.String(), "replicas": "3"},
		Ops: map[string]map[string]int{}, Faults: map[string]int{}, Sessions: map[string]int{}, PeakRSSMiB: map[string]int64{},
		RSSLimitMiB: (s.BufferBudget + soakcheck.MemoryHeadroom) >> 20, PartsChecked: len(final.Parts)}
	h.mu.Lock()
	for kind, byStatus := range h.ops {
		sum.Ops[kind] = map[string]int{}
		for st, n := range byStatus {
			label := strconv.Itoa(st)
			if st == 0 {
				label = "no answer"
			}
			sum.Ops[kind][label] += n
		}
	}
	for _, a := range h.acks {
		sum.PartsAcked++
		sum.BytesAcked += a.bytes
	}
	h.mu.Unlock()
	for _, f := range h.sortedFaults() {
		kind := f.Kind
		if strings.HasPrefix(kind, faultClockSkew) {
			kind = faultClockSkew
		}
		sum.Faults[kind]++
		sum.Windows = append(sum.Windows, window{f.Kind, f.Target, f.From.Sub(start).Seconds(), f.To.Sub(start).Seconds()})
	}
	n := int(settled.Sub(start)/bucket) + 1
	for _, b := range h.ackedBytes(start, bucket, n) {
		sum.Throughput = append(sum.Throughput, float64(b)/1e6/bucket.Seconds())
	}
	for _, st := range final.Status {
		sum.Sessions[st]++
	}
	for _, m := range final.MOCs {
		sum.MOCs += len(m)
	}
	top := int64(-1)
	for run, p := range peaks {
		sum.PeakRSSMiB[run] = p >> 20
		if p > top {
			top, sum.PeakMix = p, run+": "+mix[run]
		}
	}
	sum.Violations = []string{}
	for _, v := range violations {
		sum.Violations = append(sum.Violations, v.String())
	}
	return sum
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (s *summary) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "soak seed %d: %.0f s of load with %d clients, settled after %.0f s\n", s.Seed, s.LoadSeconds, s.Clients, s.TotalSeconds)
	fmt.Fprintf(&b, "operations (kind: answer × count):\n")
	for _, k := range sortedKeys(s.Ops) {
		fmt.Fprintf(&b, "  %-24s %s\n", k, answers(s.Ops[k]))
	}
	fmt.Fprintf(&b, "faults injected:\n")
	for _, k := range sortedKeys(s.Faults) {
		fmt.Fprintf(&b, "  %-44s %d\n", k, s.Faults[k])
	}
	fmt.Fprintf(&b, "sessions by final status: %s\n", answers(s.Sessions))
	fmt.Fprintf(&b, "acknowledged: %d parts, %.1f MiB; MOCs: %d; parts checked against S3: %d\n", s.PartsAcked, float64(s.BytesAcked)/(1<<20), s.MOCs, s.PartsChecked)
	peak, at := int64(0), ""
	for run, p := range s.PeakRSSMiB {
		if p > peak {
			peak, at = p, run
		}
	}
	fmt.Fprintf(&b, "peak RSS: %d MiB (%s; limit %d MiB) over %d replica runs; highest sample %s\n", peak, at, s.RSSLimitMiB, len(s.PeakRSSMiB), s.PeakMix)
	fmt.Fprintf(&b, "violations: %d\n", len(s.Violations))
	for _, v := range s.Violations {
		fmt.Fprintf(&b, "  %s\n", v)
	}
	return b.String()
}

func answers(m map[string]int) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// renderDoc rewrites docs/reliability.md and the plots from every saved run.
func renderDoc(root string) error {
	paths, err := filepath.Glob(filepath.Join(savedDir(root), "seed-*.json"))
	if err != nil {
		return err
	}
	var runs []*summary
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := &summary{}
		if err := json.Unmarshal(raw, s); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		runs = append(runs, s)
		if err := s.chart().Save(context.Background(), root, filepath.Join(savedDir(root), fmt.Sprintf("seed-%d.png", s.Seed))); err != nil {
			return err
		}
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].Seed < runs[j].Seed })
	intro, err := os.ReadFile(filepath.Join(savedDir(root), "intro.md"))
	if err != nil {
		return err
	}
	findings, err := os.ReadFile(filepath.Join(savedDir(root), "findings.md"))
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.WriteFile(filepath.Join(root, "docs", "reliability.md"), []byte(markdown(string(intro), runs, string(findings))), 0o600)
}

// lanes of the plot: what a fault hit, each drawn in a band of its own above
// the throughput, so overlapping faults stay apart.
var lanes = []struct {
	name  string
	color [4]uint8 // RGBA
}{
	{"S3", [4]uint8{240, 140, 20, 200}},
	{"PostgreSQL", [4]uint8{210, 40, 40, 200}},
	{"Redis", [4]uint8{140, 70, 200, 200}},
	{"replica stopped", [4]uint8{40, 40, 40, 220}},
	{"clock skewed", [4]uint8{40, 150, 60, 200}},
}

func laneOf(kind string) int {
	switch {
	case strings.HasPrefix(kind, "S3"):
		return 0
	case strings.HasPrefix(kind, "PostgreSQL"):
		return 1
	case strings.HasPrefix(kind, "Redis"):
		return 2
	case strings.HasPrefix(kind, faultClockSkew):
		return 4
	default: // a replica or the leader stopped
		return 3
	}
}

// chart is the run's throughput, and the faults in force in bands above it.
func (s *summary) chart() chart.Chart {
	top := 1.0
	for _, v := range s.Throughput {
		top = max(top, v)
	}
	top *= 1.05
	band := top * 0.09
	laneY := func(i int) float64 { return top + band*0.3 + float64(len(lanes)-1-i)*band }
	c := chart.Chart{
		Title:  fmt.Sprintf("Soak, seed %d: acknowledged part bytes, and the faults in force (bands above)", s.Seed),
		XLabel: "seconds from the start of the load", YLabel: "MB/s acknowledged (5 s buckets)",
		WidthInches: 10, HeightInches: 4.5,
		YMin: chart.Float(0), YMax: chart.Float(laneY(0) + band), XMin: chart.Float(0), XMax: chart.Float(s.LoadSeconds + 100),
	}
	for _, w := range s.Windows {
		i := laneOf(w.Kind)
		to := max(w.To, w.From+1) // an instant (a kill) still shows
		y0 := laneY(i)
		c.Bands = append(c.Bands, chart.Band{Color: lanes[i].color,
			Points: [][2]float64{{w.From, y0}, {to, y0}, {to, y0 + band*0.8}, {w.From, y0 + band*0.8}}})
	}
	for i, l := range lanes {
		c.Labels = append(c.Labels, chart.Label{X: s.LoadSeconds + 5, Y: laneY(i) + band*0.15, Text: l.name, Color: l.color})
	}
	pts := make([][2]float64, len(s.Throughput))
	for i, v := range s.Throughput {
		pts[i] = [2]float64{(float64(i) + 0.5) * bucket.Seconds(), v}
	}
	c.Lines = []chart.Line{{Points: pts, Width: 1.2}}
	return c
}
