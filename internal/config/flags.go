package config

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// Setting describes one configuration variable and its flag.
type Setting struct {
	Env  string // SESSION_TTL
	Flag string // session-ttl
	// Aliases are kubebuilder's customary names for the same setting.
	Aliases []string
	Kind    string // string, list, bool, duration, int, bytes, rate or bytes/s
	Default string
	Usage   string
}

// FlagName is the flag of a variable: SESSION_TTL → session-ttl.
func FlagName(env string) string { return strings.ReplaceAll(strings.ToLower(env), "_", "-") }

// Settings lists every configuration variable, in the table's order.
func Settings() []Setting {
	out := make([]Setting, len(settings))
	for i, st := range settings {
		usage := st.usage
		if st.isReq {
			usage += " (required)"
		}
		out[i] = Setting{Env: st.env, Flag: FlagName(st.env), Aliases: st.aliases, Kind: string(st.kind),
			Default: st.def, Usage: usage}
	}
	return out
}

// Flags holds a flag per setting; flags given on the command line beat the
// environment.
type Flags struct {
	byEnv map[string][]*flagValue
}

// BindFlags registers on fs a flag per setting, named after its variable,
// and kubebuilder's customary aliases.
func BindFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{byEnv: map[string][]*flagValue{}}
	for _, s := range Settings() {
		for i, name := range append([]string{s.Flag}, s.Aliases...) {
			v := &flagValue{setting: s, name: name, alias: i > 0}
			fs.Var(v, name, s.Usage)
			f.byEnv[s.Env] = append(f.byEnv[s.Env], v)
		}
	}
	return f
}

// Load reads the configuration: a flag given on the command line wins, else
// the variable through lookup (os.LookupEnv in production), else the default.
func (f *Flags) Load(lookup func(string) (string, bool)) (Config, error) {
	for _, vs := range f.byEnv {
		var given []string
		for _, v := range vs {
			if v.set {
				given = append(given, "--"+v.name)
			}
		}
		if len(given) > 1 {
			return Config{}, fmt.Errorf("config: %s name the same setting; give one", strings.Join(given, " and "))
		}
	}
	return load(&reader{lookup: lookup, flag: f.given})
}

func (f *Flags) given(env string) (val, from string, ok bool) {
	for _, v := range f.byEnv[env] {
		if v.set {
			return v.val, "--" + v.name, true
		}
	}
	return "", "", false
}

// flagValue keeps a flag's text as given; Load parses it like the variable's
// value, so both fail alike and errors name the flag.
type flagValue struct {
	setting Setting
	name    string
	alias   bool
	val     string
	set     bool
}

func (v *flagValue) String() string {
	switch {
	case v == nil:
		return ""
	case v.set:
		return v.val
	default:
		return v.setting.Default
	}
}

func (v *flagValue) Set(s string) error {
	v.val, v.set = s, true
	return nil
}

// IsBoolFlag lets a boolean setting's flag stand alone (--leader-elect).
func (v *flagValue) IsBoolFlag() bool { return v != nil && v.setting.Kind == string(kindBool) }

// PrintUsage writes fs's flags the way flag.PrintDefaults does, with each
// setting's variable and default.
func PrintUsage(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		v, ok := f.Value.(*flagValue)
		if !ok {
			typ, text := flag.UnquoteUsage(f)
			if t, ok := f.Value.(interface{ Type() string }); ok && typ == "value" {
				typ = t.Type() // controller-runtime's zap flags name theirs ("level", "encoder")
			}
			if typ != "" {
				typ = " " + typ
			}
			fmt.Fprintf(w, "  --%s%s\n    \t%s", f.Name, typ, strings.ReplaceAll(text, "\n", "\n    \t"))
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				fmt.Fprintf(w, " (default %q)", f.DefValue)
			}
			fmt.Fprintln(w)
			return
		}
		s := v.setting
		typ := " " + s.Kind
		if s.Kind == string(kindBool) {
			typ = ""
		}
		text := s.Usage
		if v.alias {
			text = "same as --" + s.Flag
		}
		fmt.Fprintf(w, "  --%s%s\n    \t%s (env %s, default %q)\n", f.Name, typ, text, s.Env, s.Default)
	})
}
