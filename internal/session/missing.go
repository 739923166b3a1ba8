package session

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxMissingSummary bounds SummarizeMissing: a condition message may be at most
// 32 KiB, and a summary is for people, who need the shape, not every number.
const MaxMissingSummary = 1024

// SummarizeMissing describes missing part numbers by file id in at most
// MaxMissingSummary bytes: a total, then each file's parts as ranges
// ("f1: 1-5, 9"), files in id order, cut with " …" where it would not fit.
func SummarizeMissing(missing map[string][]int) string {
	total := 0
	ids := make([]string, 0, len(missing))
	for id, parts := range missing {
		total += len(parts)
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	fmt.Fprintf(&b, "%d part(s) missing in %d file(s)", total, len(ids))
	for i, id := range ids {
		item := "; " + id + ": " + ranges(missing[id])
		room := MaxMissingSummary - len(" …") - b.Len()
		if len(item) > room || (i < len(ids)-1 && len(item) == room) {
			// As much of this file's list as fits, cut after a whole number.
			if cut := strings.LastIndex(item[:max(room, 0)], ","); cut > len(id)+3 {
				b.WriteString(item[:cut])
			}
			b.WriteString(" …")
			break
		}
		b.WriteString(item)
	}
	return b.String()
}

// ranges renders sorted part numbers as "1-5, 9, 12-20".
func ranges(parts []int) string {
	ps := slices.Clone(parts)
	slices.Sort(ps)
	var out []string
	for i := 0; i < len(ps); {
		j := i
		for j+1 < len(ps) && ps[j+1] == ps[j]+1 {
			j++
		}
		if j == i {
			out = append(out, strconv.Itoa(ps[i]))
		} else {
			out = append(out, strconv.Itoa(ps[i])+"-"+strconv.Itoa(ps[j]))
		}
		i = j + 1
	}
	return strings.Join(out, ", ")
}

// MaxMissingPerFile bounds the part numbers an INCOMPLETE_UPLOAD answer lists
// per file: a session of 100 files of 10,000 parts each would otherwise
// answer a finalize sent too early with a million numbers.
const MaxMissingPerFile = 100

// TruncateMissing keeps the first perFile (lowest) missing part numbers of
// each file, and returns each file's count of missing parts and whether
// anything was left out.
func TruncateMissing(missing map[string][]int, perFile int) (listed map[string][]int, counts map[string]int, truncated bool) {
	listed, counts = make(map[string][]int, len(missing)), make(map[string]int, len(missing))
	for id, parts := range missing {
		parts = slices.Sorted(slices.Values(parts))
		counts[id] = len(parts)
		if len(parts) > perFile {
			parts, truncated = parts[:perFile], true
		}
		listed[id] = parts
	}
	return listed, counts, truncated
}
