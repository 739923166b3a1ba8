package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
)

// env is a fixed environment with what Validate requires.
func env(extra map[string]string) func(string) (string, bool) {
	m := map[string]string{"DATABASE_URL": "postgres://x", "REDIS_URL": "redis://x", "S3_BUCKET": "b"}
	for k, v := range extra {
		m[k] = v
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func TestHelpListsEveryFlagWithItsVariable(t *testing.T) {
	t.Parallel()
	fs := newFlagSet()
	var out bytes.Buffer
	fs.SetOutput(&out)
	_, _, err := loadConfig(fs, []string{"--help"}, env(nil))
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v, want flag.ErrHelp (exit 0)", err)
	}
	for _, want := range []string{
		"Usage of manager:", "  --session-ttl duration\n", "(env SESSION_TTL, default \"1h\")",
		"  --metrics-bind-address string\n", "  --health-probe-bind-address string\n", "  --leader-elect\n",
		"  --zap-log-level level\n", "  --zap-devel\n", "  --zap-encoder encoder\n", "Kubernetes\nquantities",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    time.Duration
		wantErr string
	}{
		{"flag beats env", []string{"--session-ttl=2h"}, map[string]string{"SESSION_TTL": "3h"}, 2 * time.Hour, ""},
		{"env without flag", nil, map[string]string{"SESSION_TTL": "3h"}, 3 * time.Hour, ""},
		{"default", nil, nil, time.Hour, ""},
		{"bad flag named", []string{"--session-ttl=soon"}, map[string]string{"SESSION_TTL": "3h"}, 0, `config: --session-ttl="soon"`},
		{"bad env named", nil, map[string]string{"SESSION_TTL": "soon"}, 0, `config: SESSION_TTL="soon"`},
		{"a bound names the flag", []string{"--part-url-ttl=1h"}, nil, 0, `config: --part-url-ttl="1h": want a duration from 1s to 15m`},
		{"unknown flag", []string{"--session-tll=1h"}, nil, 0, "flag provided but not defined: -session-tll"},
	} {
		cfg, _, err := loadConfig(newFlagSet(), tc.args, env(tc.env))
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr == "" && cfg.SessionTTL != tc.want:
			t.Errorf("%s: SessionTTL = %s, want %s", tc.name, cfg.SessionTTL, tc.want)
		}
	}
}

func TestZapFlagsAndLogSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		args       []string
		env        map[string]string
		format     string
		enabled    zapcore.Level // the lowest level logged
		stacktrace bool
		wantErr    string
	}{
		{"defaults", nil, nil, "json", zapcore.InfoLevel, false, ""},
		{"environment", nil, map[string]string{"LOG_LEVEL": "debug", "LOG_FORMAT": "console"}, "console", zapcore.DebugLevel, false, ""},
		{"own flags beat environment", []string{"--log-level=warn", "--log-format=json"}, map[string]string{"LOG_LEVEL": "debug", "LOG_FORMAT": "console"}, "json", zapcore.WarnLevel, false, ""},
		{"zap-log-level beats LOG_LEVEL", []string{"--zap-log-level=error"}, map[string]string{"LOG_LEVEL": "debug"}, "json", zapcore.ErrorLevel, false, ""},
		{"zap-log-level beats --log-level", []string{"--zap-log-level=info", "--log-level=debug"}, nil, "json", zapcore.InfoLevel, false, ""},
		{"zap verbosity", []string{"--zap-log-level=3"}, nil, "json", zapcore.Level(-3), false, ""},
		{"zap-encoder beats LOG_FORMAT", []string{"--zap-encoder=console"}, map[string]string{"LOG_FORMAT": "json"}, "console", zapcore.InfoLevel, false, ""},
		{"zap-devel beats environment", []string{"--zap-devel"}, map[string]string{"LOG_LEVEL": "error", "LOG_FORMAT": "json"}, "console", zapcore.DebugLevel, true, ""},
		{"zap-devel yields to own flags", []string{"--zap-devel", "--log-format=json", "--log-level=info"}, nil, "json", zapcore.InfoLevel, true, ""},
		{"zap-stacktrace-level", []string{"--zap-stacktrace-level=error"}, nil, "json", zapcore.InfoLevel, true, ""},
		{"bad LOG_LEVEL named", nil, map[string]string{"LOG_LEVEL": "loud"}, "", 0, false, `config: LOG_LEVEL="loud"`},
		{"bad --log-format named", []string{"--log-format=xml"}, nil, "", 0, false, `config: --log-format="xml"`},
	} {
		fs := newFlagSet()
		cfg, zapOpts, err := loadConfig(fs, tc.args, env(tc.env))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		o, err := loggerOptions(cfg, fs, zapOpts)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if o.Format != tc.format || !o.Level.Enabled(tc.enabled) || o.Level.Enabled(tc.enabled-1) ||
			(o.StacktraceLevel != nil) != tc.stacktrace {
			t.Errorf("%s: format %s, level enables %v/%v, stack traces %v", tc.name, o.Format,
				o.Level.Enabled(tc.enabled), o.Level.Enabled(tc.enabled-1), o.StacktraceLevel != nil)
		}
	}
}

// Without --zap-* flags lines keep the operator's JSON shape; a zap level
// flag changes only which lines are written.
func TestLogLinesKeepTheirShape(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args  []string
		lines int
	}{{nil, 0}, {[]string{"--zap-log-level=debug"}, 2}} {
		fs := newFlagSet()
		cfg, zapOpts, err := loadConfig(fs, tc.args, env(map[string]string{"LOG_LEVEL": "warn"}))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		log, err := newLogger(&out, cfg, fs, zapOpts)
		if err != nil {
			t.Fatal(err)
		}
		log.WithName("setup").Info("starting manager", "httpAddr", ":8082")
		log.V(1).Info("detail")
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if got := len(lines); out.Len() == 0 && tc.lines != 0 || out.Len() > 0 && got != tc.lines {
			t.Fatalf("%v: output %q, want %d lines", tc.args, out.String(), tc.lines)
		}
		if tc.lines == 0 {
			continue
		}
		var l map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &l); err != nil {
			t.Fatalf("%v: %q is not JSON: %v", tc.args, lines[0], err)
		}
		if l["level"] != "info" || l["logger"] != "setup" || l["msg"] != "starting manager" || l["httpAddr"] != ":8082" {
			t.Errorf("%v: line %v", tc.args, l)
		}
		if _, err := time.Parse(time.RFC3339Nano, l["ts"].(string)); err != nil {
			t.Errorf("ts %v: %v", l["ts"], err)
		}
	}
}
