package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"
)

// logLine is one JSON log line of a manager process.
type logLine map[string]any

func (l logLine) str(k string) string { s, _ := l[k].(string); return s }

// readLogs parses a manager's JSON log file; non-JSON lines are skipped.
func readLogs(t *testing.T, path string) []logLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// linesWhere returns the lines whose fields equal every given key/value.
func linesWhere(lines []logLine, kv ...string) []logLine {
	var out []logLine
next:
	for _, l := range lines {
		for i := 0; i+1 < len(kv); i += 2 {
			if l.str(kv[i]) != kv[i+1] {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}
