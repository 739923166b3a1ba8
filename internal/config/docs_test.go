package config

import (
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/operations.md's settings table from the settings table")

const operationsDoc = "../../docs/operations.md"

// docs/operations.md shows the settings table as Load reads it: a setting
// added, renamed or given another default in settings.go and not in the docs
// fails here (-update writes it).
func TestTheDocsShowTheSettingsTable(t *testing.T) {
	raw, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	begin, end := strings.Index(doc, tableBegin), strings.Index(doc, tableEnd)
	if begin < 0 || end < begin {
		t.Fatalf("%s has no settings table between its markers", operationsDoc)
	}
	got, want := doc[begin+len(tableBegin):end], SettingsTable()
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(operationsDoc, []byte(doc[:begin+len(tableBegin)]+want+doc[end:]), 0o644); err != nil { //nolint:gosec // a document
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s's settings table is not the settings table; run go test ./internal/config -run %s -update", operationsDoc, t.Name())
}

// Every row is whole: a description, a default its own parser accepts, and
// what a wrong value is told to be.
func TestEverySettingIsComplete(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, st := range settings {
		if seen[st.env] {
			t.Errorf("%s is declared twice", st.env)
		}
		seen[st.env] = true
		if st.usage == "" || st.want == "" || st.apply == nil {
			t.Errorf("%s: usage %q, want %q", st.env, st.usage, st.want)
		}
		if err := st.apply(&Config{}, st.def); err != nil {
			t.Errorf("%s: its default %q is refused: %v", st.env, st.def, err)
		}
		if st.isReq && st.text == nil {
			t.Errorf("%s is required but cannot be read back", st.env)
		}
	}
}

// Every field of Config is filled by a row of the table: a field added
// without its row (and so never read from a flag or variable) fails here,
// naming it.
func TestEveryConfigFieldHasARow(t *testing.T) {
	t.Parallel()
	sample := map[kind]string{kindString: "x", kindList: "a,b", kindBool: "true", kindDuration: "7s", kindInt: "3",
		kindBytes: "7MiB", kindRate: "3/7s", kindByteRate: "7KiB/s"}
	filled := map[string]bool{}
	for _, st := range settings {
		v := sample[st.kind]
		if err := st.apply(&Config{}, v); err != nil {
			v = st.def // a string of a fixed set (or an endpoint): its default
			if v == "" {
				v = "https://s3.example.com"
			}
		}
		var c Config
		if err := st.apply(&c, v); err != nil {
			t.Fatalf("%s=%q: %v", st.env, v, err)
		}
		cv := reflect.ValueOf(c)
		for i := range cv.NumField() {
			if cv.Type().Field(i).IsExported() && !cv.Field(i).IsZero() {
				filled[cv.Type().Field(i).Name] = true
			}
		}
	}
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		if f := ct.Field(i); f.IsExported() && !filled[f.Name] {
			t.Errorf("Config.%s is filled by no setting: add its row to settings.go", f.Name)
		}
	}
}
