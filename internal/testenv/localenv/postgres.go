package localenv

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultAdminURL is the machine's PostgreSQL (trust auth on loopback).
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// AdminURL is $TEST_DATABASE_ADMIN_URL or DefaultAdminURL: a role that may
// create databases.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_ADMIN_URL"); u != "" {
		return u
	}
	return DefaultAdminURL
}

// CreateDatabase creates a database named name (dropping any old one when
// fresh is set) and returns its URL and a function that drops it.
func CreateDatabase(ctx context.Context, name string, fresh bool) (string, func(), error) {
	admin := AdminURL()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", nil, fmt.Errorf("connect to %s (is PostgreSQL running? hack/ensure-services.sh starts it): %w", admin, err)
	}
	defer conn.Close(ctx)
	if err := dropOrphanedDatabases(ctx, conn); err != nil {
		return "", nil, err
	}
	ident := pgx.Identifier{name}.Sanitize()
	if fresh {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			return "", nil, err
		}
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	drop := func() { //nolint:contextcheck // runs at clean-up, after the caller's context may be gone
		c, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)")
	}
	return u.String(), drop, nil
}

// RandomName returns a database or key-prefix name unique to this run. It
// carries the creating process's id, so that a database left by a run that
// was killed before its clean-up can be recognised as orphaned and dropped.
func RandomName(prefix string) string {
	return fmt.Sprintf("%s_p%d_%s", prefix, os.Getpid(), randHex(6))
}

// orphanedName matches the names RandomName makes; group 1 is the creator's pid.
var orphanedName = regexp.MustCompile(`_p([0-9]+)_[0-9a-f]{12}$`)

// dropOrphanedDatabases drops the databases RandomName named for a process
// that no longer exists: what a test run killed mid-way left behind. A pid
// reused since only keeps a database a little longer.
func dropOrphanedDatabases(ctx context.Context, conn *pgx.Conn) error {
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'mocupload%'`)
	if err != nil {
		return fmt.Errorf("list test databases: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list test databases: %w", err)
	}
	for _, name := range names {
		if !orphaned(name) {
			continue
		}
		// Another run may drop the same database at the same moment.
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop orphaned test database %s: %w", name, err)
		}
	}
	return nil
}

// orphaned reports whether name is a RandomName whose creator has exited.
func orphaned(name string) bool {
	m := orphanedName.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	pid, err := strconv.Atoi(m[1])
	if err != nil || pid <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// WithLockClock returns dbURL with PostgreSQL's lock clock (the
// mocupload.lock_clock setting read by lock_clock()) fixed at at, so a store
// opened with it ages finalize locks against that instant.
func WithLockClock(dbURL string, at time.Time) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("mocupload.lock_clock", at.UTC().Format(time.RFC3339Nano))
	u.RawQuery = q.Encode()
	return u.String(), nil
}
