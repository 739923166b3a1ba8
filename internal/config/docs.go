package config

import (
	"fmt"
	"strings"
)

// SettingsTable is docs/operations.md's table of settings, written from the
// table Load reads: a row per setting with its flag, default and meaning.
func SettingsTable() string {
	var b strings.Builder
	b.WriteString("| variable | flag | default | meaning |\n|---|---|---|---|\n")
	for _, st := range settings {
		flags := "`--" + FlagName(st.env) + "`"
		for _, a := range st.aliases {
			flags += " (`--" + a + "`)"
		}
		def := "`" + st.def + "`"
		switch {
		case st.shown != "":
			def = st.shown
		case st.isReq:
			def = "required"
		case st.def == "":
			def = "empty"
		case st.kind == kindList:
			def = "`" + strings.ReplaceAll(st.def, ",", ", ") + "`"
		}
		meaning := st.usage
		if st.docText != "" {
			meaning = st.docText
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", st.env, flags, def, strings.ReplaceAll(meaning, "|", `\|`))
	}
	return b.String()
}

// Markers around the generated table in docs/operations.md.
const (
	tableBegin = "<!-- settings table: written by `go test ./internal/config -run TestTheDocsShowTheSettingsTable -update`; edit internal/config/settings.go -->\n"
	tableEnd   = "<!-- end of settings table -->\n"
)
