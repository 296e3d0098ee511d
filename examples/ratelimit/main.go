// Command ratelimit serves a tiny HTTP endpoint behind herdcap's rate-limit
// middleware: 5 requests per second per client IP, in bursts of up to 10.
//
//	go run ./examples/ratelimit -addr 127.0.0.1:8080
//	curl -i http://127.0.0.1:8080/
//
// It stops gracefully on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/herdcap/herdcap/httpmw"
	"github.com/herdcap/herdcap/limiter"
)

// shutdownGrace is how long in-flight requests get to finish on shutdown.
const shutdownGrace = 5 * time.Second

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	rate := flag.Float64("rate", 5, "requests per second per client IP")
	burst := flag.Int("burst", 10, "requests a client IP may make at once")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, limiter.PerSecond(*rate, *burst), logger, nil); err != nil {
		logger.Error("ratelimit example failed", "error", err)
		os.Exit(1)
	}
}

// newHandler returns the example's handler, a greeting behind
// httpmw.RateLimit keyed by client IP, over a Local budget of l built with
// cfg.
func newHandler(l limiter.Limit, logger *slog.Logger, cfg limiter.Config) (http.Handler, error) {
	budget, err := limiter.NewLocal(l, cfg)
	if err != nil {
		return nil, err
	}
	mw, err := httpmw.RateLimit(httpmw.RateLimitConfig{Logger: logger}, httpmw.Policy{Budget: budget})
	if err != nil {
		return nil, err
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "hello from herdcap\n")
	})
	return mw(hello), nil
}

// run serves the example on addr until ctx is done, then shuts down,
// giving in-flight requests shutdownGrace to finish. ready, if not nil, is
// called with the bound address once the server accepts connections.
func run(ctx context.Context, addr string, l limiter.Limit, logger *slog.Logger, ready func(net.Addr)) error {
	h, err := newHandler(l, logger, limiter.Config{})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	url := "http://" + ln.Addr().String() + "/"
	logger.Info("serving", "addr", ln.Addr().String(), "limit", l.String())
	logger.Info("try it", "once", "curl -i "+url,
		"burst", fmt.Sprintf(`for i in $(seq 15); do curl -s -o /dev/null -w '%%{http_code} ' %s; done; echo`, url))
	if ready != nil {
		ready(ln.Addr())
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close() // grace is over: drop what is left
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
