package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/grpclog"
	"k8s.io/klog/v2"
)

func parseLevel(s string) (slog.Level, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("config: log_level %q: %w", s, err)
	}
	return level, nil
}

// newLogger builds the daemon's logger and routes the libraries' loggers
// (logrus: containers/image and storage; klog: the streaming server;
// grpclog: gRPC) through it, so --log-format json is JSON on every line.
// The level is a LevelVar so SIGHUP can change it.
func newLogger(cfg Config, w io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	level, err := parseLevel(cfg.LogLevel)
	if err != nil {
		return nil, nil, err
	}
	lv := new(slog.LevelVar)
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	log := slog.New(h)
	setLevel(lv, level)

	logrus.SetOutput(io.Discard)
	logrus.StandardLogger().ReplaceHooks(logrus.LevelHooks{})
	logrus.AddHook(logrusHook{log.With("logger", "logrus")})
	klog.SetSlogLogger(log.With("logger", "klog"))
	grpclog.SetLoggerV2(grpcLogger{log.With("logger", "grpc"), lv})
	return log, lv, nil
}

// setLevel changes the daemon's level and the libraries' with it. The
// containers libraries are chatty at info: they log at warning and above
// unless the daemon is debugging.
func setLevel(lv *slog.LevelVar, level slog.Level) {
	lv.Set(level)
	if level <= slog.LevelDebug {
		logrus.SetLevel(logrus.DebugLevel)
	} else {
		logrus.SetLevel(logrus.WarnLevel)
	}
}

// logrusHook re-emits each logrus entry through slog, fields as attributes.
type logrusHook struct{ log *slog.Logger }

func (logrusHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h logrusHook) Fire(e *logrus.Entry) error {
	level := slog.LevelInfo
	switch {
	case e.Level <= logrus.ErrorLevel:
		level = slog.LevelError
	case e.Level == logrus.WarnLevel:
		level = slog.LevelWarn
	case e.Level >= logrus.DebugLevel:
		level = slog.LevelDebug
	}
	attrs := make([]any, 0, 2*len(e.Data))
	for k, v := range e.Data {
		if err, ok := v.(error); ok {
			v = err.Error()
		}
		attrs = append(attrs, k, v)
	}
	h.log.Log(context.Background(), level, e.Message, attrs...)
	return nil
}

// grpcLogger is grpclog.LoggerV2 over slog. gRPC's info chatter
// (connection state changes) is debug here.
type grpcLogger struct {
	log *slog.Logger
	lv  *slog.LevelVar
}

func (g grpcLogger) out(level slog.Level, msg string) {
	g.log.Log(context.Background(), level, strings.TrimSpace(msg))
}
func (g grpcLogger) Info(args ...any)   { g.out(slog.LevelDebug, fmt.Sprint(args...)) }
func (g grpcLogger) Infoln(args ...any) { g.out(slog.LevelDebug, fmt.Sprintln(args...)) }
func (g grpcLogger) Infof(format string, args ...any) {
	g.out(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Warning(args ...any)   { g.out(slog.LevelWarn, fmt.Sprint(args...)) }
func (g grpcLogger) Warningln(args ...any) { g.out(slog.LevelWarn, fmt.Sprintln(args...)) }
func (g grpcLogger) Warningf(format string, args ...any) {
	g.out(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Error(args ...any)   { g.out(slog.LevelError, fmt.Sprint(args...)) }
func (g grpcLogger) Errorln(args ...any) { g.out(slog.LevelError, fmt.Sprintln(args...)) }
func (g grpcLogger) Errorf(format string, args ...any) {
	g.out(slog.LevelError, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Fatal(args ...any)   { g.Error(args...); panic(fmt.Sprint(args...)) }
func (g grpcLogger) Fatalln(args ...any) { g.Errorln(args...); panic(fmt.Sprintln(args...)) }
func (g grpcLogger) Fatalf(format string, args ...any) {
	g.Errorf(format, args...)
	panic(fmt.Sprintf(format, args...))
}

// V: gRPC asks before building verbose messages; only debug wants them.
func (g grpcLogger) V(l int) bool { return g.lv.Level() <= slog.LevelDebug }
