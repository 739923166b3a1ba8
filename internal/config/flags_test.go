package config

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// loadWith parses args into a fresh flag set and loads with env behind it.
func loadWith(t *testing.T, args []string, env map[string]string) (Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return f.Load(lookup(env))
}

func TestFlagBeatsEnvironmentBeatsDefault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		args       []string
		env        map[string]string
		want       time.Duration
		wantOrigin string
	}{
		{"flag over env", []string{"--session-ttl=2h"}, map[string]string{"SESSION_TTL": "3h"}, 2 * time.Hour, "--session-ttl"},
		{"flag alone", []string{"-session-ttl", "2h"}, nil, 2 * time.Hour, "--session-ttl"},
		{"env without flag", nil, map[string]string{"SESSION_TTL": "3h"}, 3 * time.Hour, "SESSION_TTL"},
		{"default", nil, nil, time.Hour, ""},
		{"empty env means default", nil, map[string]string{"SESSION_TTL": ""}, time.Hour, ""},
		{"other flags leave it alone", []string{"--http-addr=:9000"}, map[string]string{"SESSION_TTL": "3h"}, 3 * time.Hour, "SESSION_TTL"},
	} {
		c, err := loadWith(t, tc.args, tc.env)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if c.SessionTTL != tc.want || c.Origin("SESSION_TTL") != tc.wantOrigin {
			t.Errorf("%s: SessionTTL = %s from %q; want %s from %q", tc.name, c.SessionTTL, c.Origin("SESSION_TTL"), tc.want, tc.wantOrigin)
		}
	}
}

// Each kind of setting reads a flag as it reads its variable.
func TestFlagsOfEveryKind(t *testing.T) {
	t.Parallel()
	c, err := loadWith(t, []string{"--admin-groups=ops, devs", "--max-file-size-bytes=2Gi", "--finalize-rate-limit=3/10s",
		"--max-files-per-session=7", "--allow-browser-uploads", "--auth-audiences=", "--slug-conflict-strategy=PROMPT_USER"},
		map[string]string{"ADMIN_GROUPS": "env-group", "AUTH_AUDIENCES": "a,b", "ALLOW_BROWSER_UPLOADS": "false"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.AdminGroups, ",") != "ops,devs" || c.MaxFileSizeBytes != 2<<30 || c.FinalizeLimit != 3 ||
		c.FinalizeWindow != 10*time.Second || c.MaxFilesPerSession != 7 || !c.AllowBrowserUploads ||
		len(c.AuthAudiences) != 0 || c.SlugConflictStrategy != "PROMPT_USER" {
		t.Errorf("flags not applied: %+v", c)
	}
}

func TestKubebuilderFlagNames(t *testing.T) {
	t.Parallel()
	c, err := loadWith(t, []string{"--metrics-bind-address=:9443", "--health-probe-bind-address=:9081", "--leader-elect",
		"--metrics-cert-path=/certs"}, map[string]string{"METRICS_ADDR": ":1", "LEADER_ELECTION": "false"})
	if err != nil {
		t.Fatal(err)
	}
	if c.MetricsAddr != ":9443" || c.ProbeAddr != ":9081" || !c.LeaderElection || c.MetricsCertDir != "/certs" {
		t.Errorf("aliases not applied: %+v", c)
	}
	if c.Origin("METRICS_ADDR") != "--metrics-bind-address" {
		t.Errorf("origin = %q", c.Origin("METRICS_ADDR"))
	}
	if _, err := loadWith(t, []string{"--metrics-addr=:1", "--metrics-bind-address=:2"}, nil); err == nil ||
		!strings.Contains(err.Error(), "--metrics-addr") || !strings.Contains(err.Error(), "--metrics-bind-address") {
		t.Errorf("both names given: err = %v", err)
	}
}

// An invalid value is refused naming what supplied it: the flag when given,
// else the variable.
func TestInvalidValuesNameTheirSource(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args      []string
		env       map[string]string
		want, not string
	}{
		{[]string{"--session-ttl=soon"}, map[string]string{"SESSION_TTL": "1h"}, "--session-ttl", "SESSION_TTL"},
		{nil, map[string]string{"SESSION_TTL": "soon"}, "SESSION_TTL", "--session-ttl"},
		{[]string{"--leader-elect=maybe"}, nil, "--leader-elect", "LEADER_ELECTION"},
		{[]string{"--max-file-size-bytes=1.5"}, nil, "--max-file-size-bytes", "MAX_FILE_SIZE_BYTES"},
		{[]string{"--part-buffer-budget-bytes=-1Gi"}, nil, "--part-buffer-budget-bytes", "PART_BUFFER_BUDGET_BYTES"},
		{[]string{"--finalize-rate-limit=ten"}, nil, "--finalize-rate-limit", "FINALIZE_RATE_LIMIT"},
		{[]string{"--max-active-sessions-per-user=0"}, nil, "--max-active-sessions-per-user", "MAX_ACTIVE"},
		{[]string{"--slug-conflict-strategy=RANDOM"}, nil, "--slug-conflict-strategy", "SLUG_CONFLICT_STRATEGY"},
		{[]string{"--max-part-size-bytes=1Mi"}, nil, "--max-part-size-bytes", "MAX_PART_SIZE_BYTES"},
		{[]string{"--tls-cert-file=/c"}, nil, "--tls-cert-file", "TLS_CERT_FILE="},
	} {
		_, err := loadWith(t, tc.args, tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tc.not) {
			t.Errorf("%v %v: err = %v; want one naming %s, not %s", tc.args, tc.env, err, tc.want, tc.not)
		}
	}
}

func TestValidateNamesTheSource(t *testing.T) {
	t.Parallel()
	// A setting's own bounds are its row's (the table), checked as it loads.
	if _, err := loadWith(t, []string{"--part-url-ttl=1h", "--redis-url=redis://x", "--s3-bucket=b"}, nil); err == nil ||
		!strings.Contains(err.Error(), "--part-url-ttl") || !strings.Contains(err.Error(), "from 1s to 15m") {
		t.Errorf("load = %v, want an error naming --part-url-ttl and its bounds", err)
	}
	c, err := loadWith(t, []string{"--redis-url=redis://x"}, map[string]string{"S3_BUCKET": ""})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || err.Error() != "required configuration missing: DATABASE_URL (--database-url), S3_BUCKET (--s3-bucket)" {
		t.Errorf("Validate() = %v", err)
	}
	c, err = loadWith(t, []string{"--admin-groups=system:authenticated"}, map[string]string{
		"DATABASE_URL": "postgres://x", "REDIS_URL": "redis://x", "S3_BUCKET": "b"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "--admin-groups must not contain") {
		t.Errorf("Validate() = %v", err)
	}
}

// Every variable has a flag of its own name, a description, and a line in
// --help with its variable and default.
func TestEverySettingIsAFlagInTheHelp(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	BindFlags(fs)
	var help bytes.Buffer
	PrintUsage(&help, fs)
	settings := Settings()
	if len(settings) < 60 {
		t.Fatalf("only %d settings", len(settings))
	}
	for _, s := range settings {
		if s.Usage == "" {
			t.Errorf("%s has no description", s.Env)
		}
		if s.Flag != strings.ToLower(strings.ReplaceAll(s.Env, "_", "-")) || fs.Lookup(s.Flag) == nil {
			t.Errorf("%s: flag %q", s.Env, s.Flag)
		}
		line := "  --" + s.Flag
		if s.Kind != "bool" {
			line += " " + s.Kind
		}
		if !strings.Contains(help.String(), line+"\n") || !strings.Contains(help.String(), "(env "+s.Env+", default ") {
			t.Errorf("help lacks %s (%s)", s.Flag, s.Env)
		}
	}
	for _, want := range []string{
		`--session-ttl duration` + "\n", `(env SESSION_TTL, default "1h")`, `(env PART_BUFFER_BUDGET_BYTES, default "256MiB")`,
		`(env SESSION_RETENTION, default "168h")`, `(env FINALIZE_RATE_LIMIT, default "10/1m")`,
		"  --leader-elect\n    \tsame as --leader-election (env LEADER_ELECTION, default \"false\")",
		"  --metrics-bind-address string\n",
	} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, help.String())
		}
	}
}
