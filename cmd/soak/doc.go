package main

import (
	"fmt"
	"strings"
)

// markdown is docs/reliability.md: the hand-written description of what the
// soak does and checks (docs/reliability/intro.md), each recorded run, then
// docs/reliability/findings.md (the bugs the soak found and their regression
// tests), both included as they are.
func markdown(intro string, runs []*summary, findings string) string {
	var b strings.Builder
	b.WriteString(intro)
	b.WriteString("## Runs\n\n")
	if len(runs) == 0 {
		b.WriteString("No run recorded yet.\n\n")
	}
	b.WriteString("| seed | date | load | settled after | sessions | parts acknowledged | MOCs | parts checked | faults | peak RSS (limit) | violations |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range runs {
		faults := 0
		for _, n := range r.Faults {
			faults += n
		}
		sessions := 0
		for _, n := range r.Sessions {
			sessions += n
		}
		peak := int64(0)
		for _, p := range r.PeakRSSMiB {
			peak = max(peak, p)
		}
		fmt.Fprintf(&b, "| %d | %s | %.0f s | %.0f s | %d | %d (%.0f MiB) | %d | %d | %d | %d MiB (%d MiB) | **%d** |\n", r.Seed, r.Date,
			r.LoadSeconds, r.TotalSeconds, sessions, r.PartsAcked, float64(r.BytesAcked)/(1<<20), r.MOCs, r.PartsChecked, faults, peak,
			r.RSSLimitMiB, len(r.Violations))
	}
	b.WriteString("\n")
	for _, r := range runs {
		fmt.Fprintf(&b, "### Seed %d\n\n![throughput with fault windows, seed %d](reliability/seed-%d.png)\n\n", r.Seed, r.Seed, r.Seed)
		b.WriteString("Sessions by final status: " + answers(r.Sessions) + ".\n\n")
		if r.PeakMix != "" {
			fmt.Fprintf(&b, "Highest RSS sample (%d replica runs): %s.\n\n", len(r.PeakRSSMiB), r.PeakMix)
		}
		b.WriteString("| operation | answers (status × count) |\n|---|---|\n")
		for _, k := range sortedKeys(r.Ops) {
			fmt.Fprintf(&b, "| %s | %s |\n", k, answers(r.Ops[k]))
		}
		b.WriteString("\n| fault | injected |\n|---|---|\n")
		for _, k := range sortedKeys(r.Faults) {
			fmt.Fprintf(&b, "| %s | %d |\n", k, r.Faults[k])
		}
		b.WriteString("\n")
		if len(r.Violations) > 0 {
			b.WriteString("Violations:\n\n")
			for _, v := range r.Violations {
				fmt.Fprintf(&b, "- %s\n", v)
			}
			b.WriteString("\n")
		}
	}
	b.WriteString(findings)
	return b.String()
}
