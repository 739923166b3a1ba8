// Package store is the PostgreSQL adapter: connection pool, versioned
// migrations, and the queries of sessions, files, parts and MOCs.
package store

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store wraps the pool; its methods are the operator's only SQL.
type Store struct {
	Pool *pgxpool.Pool
	// CallTimeout bounds each call on the client side (0: only the caller's
	// context). The server's statement_timeout cannot help when the network
	// swallows a statement or its reply; this deadline can.
	CallTimeout time.Duration
}

// Options tune the connection; zero values take the defaults.
type Options struct {
	// StatementTimeout is the server-side statement_timeout (default 30s),
	// unless the URL sets one.
	StatementTimeout time.Duration
	// CallTimeout is the client-side deadline of each call (default
	// StatementTimeout + 5s).
	CallTimeout time.Duration
	// OnUnreachable, if set, is called each time PostgreSQL cannot be reached
	// while opening (Open keeps trying until its context ends).
	OnUnreachable func(error)
	// IdleInTransactionTimeout is the server-side
	// idle_in_transaction_session_timeout (default 10s), unless the URL sets
	// one: a transaction whose client went silent (packets dropped, not the
	// socket closed) is ended by the server, with the row locks it holds (the
	// commit's SELECT … FOR UPDATE, the active-session cap's advisory lock),
	// instead of lasting until TCP gives up after about two hours.
	IdleInTransactionTimeout time.Duration
	// KeepAlive is the TCP keepalive idle time on both ends (default 10s;
	// probes every 5s, 3 unanswered probes end the connection): a peer that
	// is gone is noticed within about 25 s by the operator and by the server.
	KeepAlive time.Duration
}

// DefaultStatementTimeout bounds every statement on the server.
const DefaultStatementTimeout = 30 * time.Second

// Defaults of the connection's liveness settings (Options).
const (
	DefaultIdleInTransactionTimeout = 10 * time.Second
	DefaultKeepAlive                = 10 * time.Second
	keepAliveInterval               = 5 * time.Second
	keepAliveCount                  = 3
)

// Open connects to PostgreSQL with the default timeouts and applies pending
// migrations.
func Open(ctx context.Context, url string) (*Store, error) {
	return OpenWithOptions(ctx, url, Options{})
}

// OpenWithOptions connects and applies pending migrations. Replicas starting
// together serialise on goose's advisory-lock session locker.
func OpenWithOptions(ctx context.Context, url string, o Options) (*Store, error) {
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = DefaultStatementTimeout
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = o.StatementTimeout + 5*time.Second
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	o.IdleInTransactionTimeout = cmp.Or(o.IdleInTransactionTimeout, DefaultIdleInTransactionTimeout)
	o.KeepAlive = cmp.Or(o.KeepAlive, DefaultKeepAlive)
	params := cfg.ConnConfig.RuntimeParams
	for name, value := range map[string]string{
		"statement_timeout":                   strconv.FormatInt(o.StatementTimeout.Milliseconds(), 10),
		"idle_in_transaction_session_timeout": strconv.FormatInt(o.IdleInTransactionTimeout.Milliseconds(), 10),
		// The server's side of TCP keepalive (ignored on a Unix socket).
		"tcp_keepalives_idle":     strconv.Itoa(int(o.KeepAlive.Seconds())),
		"tcp_keepalives_interval": strconv.Itoa(int(keepAliveInterval.Seconds())),
		"tcp_keepalives_count":    strconv.Itoa(keepAliveCount),
	} {
		if _, set := params[name]; !set {
			params[name] = value
		}
	}
	// The operator's side: pgx's dialer waits 5 minutes before its first probe.
	dialer := &net.Dialer{
		Timeout:         cfg.ConnConfig.ConnectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: o.KeepAlive, Interval: keepAliveInterval, Count: keepAliveCount},
	}
	cfg.ConnConfig.DialFunc = dialer.DialContext
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	s := &Store{Pool: pool, CallTimeout: o.CallTimeout}
	// A replica that starts while PostgreSQL is briefly unreachable (a
	// failover, a network cut) waits for it instead of exiting into a crash
	// loop whose back-off outlasts the outage.
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := s.Migrate(ctx)
		if err == nil {
			return s, nil
		}
		if !unreachable(err) || ctx.Err() != nil {
			pool.Close()
			return nil, err
		}
		if o.OnUnreachable != nil {
			o.OnUnreachable(err)
		}
		select {
		case <-ctx.Done():
			pool.Close()
			return nil, fmt.Errorf("%w (gave up waiting for PostgreSQL: %w)", err, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// unreachable reports an error of reaching PostgreSQL, not of what it
// answered (a wrong password or database is not waited out).
func unreachable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne)
}

// Migrate applies every pending migration.
func (s *Store) Migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return err
	}
	db := stdlib.OpenDBFromPool(s.Pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	return nil
}

// bound gives one call its deadline: CallTimeout, or the caller's if sooner.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.CallTimeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.CallTimeout)
}

// Close releases the pool.
func (s *Store) Close() { s.Pool.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.Pool.Ping(ctx)
}
