package localenv

import (
	"context"
	"fmt"
	"net/url"
	"os"

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

// RandomName returns a database or key-prefix name unique to this run.
func RandomName(prefix string) string { return prefix + "_" + randHex(6) }
