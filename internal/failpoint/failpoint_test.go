package failpoint

import (
	"errors"
	"testing"
	"time"
)

// Failpoints fire only in builds with the "failpoints" tag; any other build
// (the production binary) ignores them and refuses MOCUPLOAD_FAILPOINTS at
// start, so no environment variable can make it fail or kill itself. `make
// test` runs this test both ways.
func TestOnlyTestBuildsHaveFailpoints(t *testing.T) {
	t.Setenv("MOCUPLOAD_FAILPOINTS", "finalize/after-lock=kill")
	err := EnableFromEnv()
	Disable("finalize/after-lock")
	if Compiled == (err != nil) {
		t.Fatalf("failpoints compiled: %v; MOCUPLOAD_FAILPOINTS gave %v", Compiled, err)
	}
	t.Setenv("MOCUPLOAD_CLOCK_SKEW", "-30s")
	skew, err := ClockSkew()
	if Compiled && (err != nil || skew != -30*time.Second) || !Compiled && (err == nil || skew != 0) {
		t.Fatalf("failpoints compiled: %v; MOCUPLOAD_CLOCK_SKEW=-30s gave %v, %v", Compiled, skew, err)
	}
	Enable("test/point", "error")
	got := Inject("test/point")
	Disable("test/point")
	if Compiled != errors.Is(got, ErrInjected) {
		t.Fatalf("failpoints compiled: %v; an armed failpoint gave %v", Compiled, got)
	}
}
