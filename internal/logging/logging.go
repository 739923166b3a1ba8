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
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return logr.Discard(), fmt.Errorf("log level %q: %w", level, err)
	}
	if w == nil {
		w = os.Stderr
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	encCfg.MessageKey = "msg"
	var enc zapcore.Encoder
	switch format {
	case "json", "":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		encCfg.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return logr.Discard(), fmt.Errorf("log format %q: want json or console", format)
	}
	core := zapcore.NewCore(enc, zapcore.AddSync(w), lvl)
	return zapr.NewLogger(zap.New(core)), nil
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
