package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	crzap "sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/mocs-dev/upload-operator/internal/config"
	"github.com/mocs-dev/upload-operator/internal/logging"
)

// bindFlags registers every flag of the manager on fs: one per setting, and
// controller-runtime's --zap-* flags.
func bindFlags(fs *flag.FlagSet) (*config.Flags, *crzap.Options) {
	zapOpts := &crzap.Options{}
	zapOpts.BindFlags(fs)
	// controller-runtime's texts describe its own logger's defaults, not this one's.
	fs.Lookup("zap-devel").Usage = "development defaults: debug, console and stack traces from warn " +
		"(without it: LOG_LEVEL, LOG_FORMAT and no stack traces)"
	fs.Lookup("zap-time-encoding").Usage = "time encoding of log lines: epoch, millis, nanos, iso8601, rfc3339 " +
		"or rfc3339nano (without it: RFC 3339 with nanoseconds in json, the time of day in console)"
	settings := config.BindFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage of %s:

Each setting comes from its flag when given, else from its environment
variable, else its default. Byte counts take 268435456, 256MiB or Kubernetes
quantities such as 256Mi or 500M. --zap-log-level and --zap-encoder beat
--log-level and --log-format; --zap-devel makes debug and console the
defaults over LOG_LEVEL and LOG_FORMAT.

`, filepath.Base(fs.Name()))
		config.PrintUsage(fs.Output(), fs)
	}
	return settings, zapOpts
}

// loadConfig parses args and reads the configuration, flags first and the
// environment (through lookup) behind them, and checks it.
func loadConfig(fs *flag.FlagSet, args []string, lookup func(string) (string, bool)) (config.Config, *crzap.Options, error) {
	settings, zapOpts := bindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return config.Config{}, nil, err
	}
	cfg, err := settings.Load(lookup)
	if err != nil {
		return config.Config{}, nil, err
	}
	if err := cfg.Validate(); err != nil {
		return config.Config{}, nil, err
	}
	return cfg, zapOpts, nil
}

// newLogger builds the operator's logger (internal/logging's line format)
// from LOG_FORMAT and LOG_LEVEL as changed by the --zap-* flags fs parsed.
func newLogger(w io.Writer, cfg config.Config, fs *flag.FlagSet, zapOpts *crzap.Options) (logr.Logger, error) {
	o, err := loggerOptions(cfg, fs, zapOpts)
	if err != nil {
		return logr.Discard(), err
	}
	return logging.NewWithOptions(w, o)
}

// loggerOptions settles the logger's format and level. A flag beats the
// environment, and controller-runtime's flags beat the operator's own:
// --zap-encoder / --zap-log-level, then --log-format / --log-level, then
// --zap-devel's console and debug, then LOG_FORMAT / LOG_LEVEL, then json and
// info. --zap-stacktrace-level and --zap-time-encoding apply when given
// (--zap-devel adds stack traces from warn); without them lines keep their
// format.
func loggerOptions(cfg config.Config, fs *flag.FlagSet, zapOpts *crzap.Options) (logging.Options, error) {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	format, formatFrom := cfg.LogFormat, cfg.Name("LOG_FORMAT")
	level, levelFrom := cfg.LogLevel, cfg.Name("LOG_LEVEL")
	o := logging.Options{StacktraceLevel: zapOpts.StacktraceLevel, TimeEncoder: zapOpts.TimeEncoder}
	if zapOpts.Development {
		if !cfg.FromFlag("LOG_FORMAT") {
			format, formatFrom = "console", "--zap-devel"
		}
		if !cfg.FromFlag("LOG_LEVEL") {
			level, levelFrom = "debug", "--zap-devel"
		}
		if o.StacktraceLevel == nil {
			o.StacktraceLevel = zapcore.WarnLevel
		}
	}
	if given["zap-encoder"] {
		format, formatFrom = strings.ToLower(fs.Lookup("zap-encoder").Value.String()), "--zap-encoder"
	}
	if format != "json" && format != "console" {
		return o, fmt.Errorf("config: %s=%q: want json or console", formatFrom, format)
	}
	o.Format = format
	if zapOpts.Level != nil {
		o.Level = zapOpts.Level
		return o, nil
	}
	lvl, err := logging.ParseLevel(level)
	if err != nil {
		return o, fmt.Errorf("config: %s=%q: want debug, info, warn or error", levelFrom, level)
	}
	o.Level = lvl
	return o, nil
}
