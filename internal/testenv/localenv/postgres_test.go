package localenv

import (
	"context"
	"fmt"
	"os/exec"
	"testing"

	"github.com/jackc/pgx/v5"
)

// A database named for a test process that has exited (what a killed run
// leaves) is dropped when the next run creates one; the new one, named for a
// live process, stays.
func TestOrphanedTestDatabasesAreDropped(t *testing.T) {
	ctx := context.Background()
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	orphan := fmt.Sprintf("mocupload_orphan_p%d_%s", exited.Process.Pid, randHex(6))
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{orphan}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{orphan}.Sanitize())
	})

	name := RandomName("mocupload_localenv")
	_, drop, err := CreateDatabase(ctx, name, false)
	if err != nil {
		t.Fatal(err)
	}
	defer drop()
	exists := func(db string) bool {
		t.Helper()
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, db).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	if exists(orphan) {
		t.Errorf("%s (its process has exited) was not dropped", orphan)
	}
	if !exists(name) {
		t.Errorf("%s (this live process's) is missing", name)
	}
}
