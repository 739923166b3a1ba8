// Package logging builds the operator's zap logger (JSON by default) and its
// logr face for controller-runtime.
package logging

import (
	"fmt"
	"io"
	"os"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a logr.Logger writing to w (stderr when nil) in "json" or
// "console" format at the given level ("debug", "info", "warn", "error").
func New(w io.Writer, format, level string) (logr.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return logr.Discard(), err
	}
	return NewWithOptions(w, Options{Format: format, Level: lvl})
}

// ParseLevel parses a level as LOG_LEVEL gives it.
func ParseLevel(level string) (zapcore.Level, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return lvl, fmt.Errorf("log level %q: %w", level, err)
	}
	return lvl, nil
}

// Options are what controller-runtime's --zap-* flags may change besides the
// format and level; the zero values keep the operator's own line format.
type Options struct {
	Format string // "json" (or empty) or "console"
	Level  zapcore.LevelEnabler
	// StacktraceLevel adds a stack trace to entries at or above it; nil adds none.
	StacktraceLevel zapcore.LevelEnabler
	// TimeEncoder replaces the format's own time encoding.
	TimeEncoder zapcore.TimeEncoder
}

// NewWithOptions is New with the level and the rest given as Options.
func NewWithOptions(w io.Writer, o Options) (logr.Logger, error) {
	if w == nil {
		w = os.Stderr
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	encCfg.MessageKey = "msg"
	var enc zapcore.Encoder
	switch o.Format {
	case "json", "":
		if o.TimeEncoder != nil {
			encCfg.EncodeTime = o.TimeEncoder
		}
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		encCfg.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		if o.TimeEncoder != nil {
			encCfg.EncodeTime = o.TimeEncoder
		}
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return logr.Discard(), fmt.Errorf("log format %q: want json or console", o.Format)
	}
	lvl := o.Level
	if lvl == nil {
		lvl = zapcore.InfoLevel
	}
	core := zapcore.NewCore(enc, zapcore.AddSync(w), lvl)
	var opts []zap.Option
	if o.StacktraceLevel != nil {
		opts = append(opts, zap.AddStacktrace(o.StacktraceLevel))
	}
	return zapr.NewLogger(zap.New(core, opts...)), nil
}

// Warn logs at zap's WARN level through a logr.Logger (logr has no warning
// level; zapr exposes the zap logger underneath, with the logger's name and
// values). Transient failures the operator recovers from are warnings.
func Warn(log logr.Logger, msg string, keysAndValues ...any) {
	if u, ok := log.GetSink().(zapr.Underlier); ok {
		u.GetUnderlying().WithOptions(zap.AddCallerSkip(1)).Sugar().Warnw(msg, keysAndValues...)
		return
	}
	log.Info(msg, append(keysAndValues, "severity", "warn")...)
}
