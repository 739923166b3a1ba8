package config

import (
	"strings"
	"testing"
	"time"
)

func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaultsMatchTheContract(t *testing.T) {
	t.Parallel()
	c, err := Load(lookup(nil))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"HTTP_ADDR", c.HTTPAddr, ":8082"},
		{"SESSION_NAMESPACE", c.SessionNamespace, "default"},
		{"AUTH_CACHE_TTL", c.AuthCacheTTL, 30 * time.Second},
		{"UPLOAD_PART_TIMEOUT", c.UploadPartTimeout, 25 * time.Second},
		{"FINALIZE_RATE_LIMIT count", c.FinalizeLimit, 10},
		{"FINALIZE_RATE_LIMIT window", c.FinalizeWindow, time.Minute},
		{"STALE_LOCK_AFTER", c.StaleLockAfter, 5 * time.Minute},
		{"SESSION_TTL", c.SessionTTL, time.Hour},
		{"SESSION_RETENTION", c.SessionRetention, 168 * time.Hour},
		{"MAX_FILE_SIZE_BYTES", c.MaxFileSizeBytes, int64(5 << 30)},
		{"PART_BUFFER_BUDGET_BYTES", c.PartBufferBudget, int64(256 << 20)},
		{"SLUG_CONFLICT_STRATEGY", c.SlugConflictStrategy, "AUTO_APPEND"},
		{"REDIS_KEY_PREFIX", c.RedisKeyPrefix, "mocupload:"},
		{"ALLOW_BROWSER_UPLOADS", c.AllowBrowserUploads, false},
		{"ALLOWED_UPLOAD_ORIGINS", len(c.AllowedUploadOrigins), 0},
		{"ADMIN_GROUPS", len(c.AdminGroups), 0},
		{"MAX_FILES_PER_SESSION", c.MaxFilesPerSession, 100},
		{"MAX_JSON_BODY_BYTES", c.MaxJSONBodyBytes, int64(64 << 10)},
		{"MAX_PART_SIZE_BYTES", c.MaxPartSizeBytes, int64(64 << 20)},
		{"FINALIZE_TIMEOUT", c.FinalizeTimeout, 5 * time.Minute},
		{"AUTH_AUDIENCES", strings.Join(c.AuthAudiences, ","), "uploads.mocs.dev"},
		{"MAX_ACTIVE_SESSIONS_PER_USER", c.MaxActiveSessions, 20},
		{"SESSION_CREATE_RATE_LIMIT count", c.CreateLimit, 30},
		{"SESSION_CREATE_RATE_LIMIT window", c.CreateWindow, time.Minute},
		{"S3_CALL_TIMEOUT", c.S3CallTimeout, 30 * time.Second},
		{"MIN_PART_RATE", c.MinPartRate, int64(64 << 10)},
		{"MIN_PART_RATE_GRACE", c.MinPartRateGrace, 10 * time.Second},
		{"MAX_PARTS_IN_FLIGHT_PER_USER", c.MaxPartsInFlightPerUser, 8},
		{"PART_BUFFER_SHARE_PER_TENANT", c.PartBufferSharePerTenant, 25},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("Validate without DATABASE_URL = %v", err)
	}
}

func TestOverridesAndErrors(t *testing.T) {
	t.Parallel()
	c, err := Load(lookup(map[string]string{
		"ADMIN_GROUPS": " system:serviceaccounts:admins , ops ", "FINALIZE_RATE_LIMIT": "3/10s",
		"MAX_FILE_SIZE_BYTES": "1GiB", "ALLOW_BROWSER_UPLOADS": "true", "SLUG_CONFLICT_STRATEGY": "PROMPT_USER",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.AdminGroups) != 2 || c.AdminGroups[1] != "ops" || c.FinalizeLimit != 3 || c.FinalizeWindow != 10*time.Second ||
		c.MaxFileSizeBytes != 1<<30 || !c.AllowBrowserUploads || c.SlugConflictStrategy != "PROMPT_USER" {
		t.Errorf("overrides not applied: %+v", c)
	}
	for name, val := range map[string]string{
		"UPLOAD_PART_TIMEOUT": "soon", "FINALIZE_RATE_LIMIT": "ten", "MAX_FILE_SIZE_BYTES": "big",
		"ALLOW_BROWSER_UPLOADS": "maybe", "SLUG_CONFLICT_STRATEGY": "RANDOM",
		"S3_PRESIGN_ENDPOINT": "s3.example.com", "S3_ENDPOINT": "ftp://s3.example.com",
		"MIN_PART_RATE": "64KiB", "FINALIZE_LIMIT_WITHOUT_REDIS": "maybe", "MAX_PARTS_IN_FLIGHT_PER_USER": "0",
		"AUTH_FAILURE_LIMIT": "lots", "GET_RATE_LIMIT": "0/1m", "KEPT_SESSIONS_PER_USER": "-1",
	} {
		if _, err := Load(lookup(map[string]string{name: val})); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: err = %v, want an error naming it", name, val, err)
		}
	}
}

// Groups that every authenticated caller, or every ServiceAccount, belongs to
// are refused as admin groups at start-up.
func TestBroadAdminGroupsAreRefused(t *testing.T) {
	t.Parallel()
	base := map[string]string{"DATABASE_URL": "postgres://x", "REDIS_URL": "redis://x", "S3_BUCKET": "b"}
	for groups, ok := range map[string]bool{
		"system:authenticated":                    false,
		"mocupload-admins,system:serviceaccounts": false,
		"system:unauthenticated":                  false,
		"mocupload-admins":                        true,
		"system:serviceaccounts:mocupload-admins": true,
	} {
		env := map[string]string{"ADMIN_GROUPS": groups}
		for k, v := range base {
			env[k] = v
		}
		c, err := Load(lookup(env))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); (err == nil) != ok {
			t.Errorf("ADMIN_GROUPS=%s: Validate() = %v, want ok=%v", groups, err, ok)
		}
	}
}

// An orphan sweep younger than an activation step could abort an upload its
// creator is about to record.
func TestOrphanMinAgeMustOutlastAnActivationStep(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		minAge, s3Timeout string
		ok                bool
	}{{"15m", "30s", true}, {"90s", "30s", false}, {"91s", "30s", true}, {"75s", "10s", true}, {"50s", "10s", false}} {
		c, err := Load(lookup(map[string]string{"DATABASE_URL": "postgres://x", "REDIS_URL": "redis://x", "S3_BUCKET": "b",
			"ORPHAN_UPLOAD_MIN_AGE": tc.minAge, "S3_CALL_TIMEOUT": tc.s3Timeout}))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("ORPHAN_UPLOAD_MIN_AGE=%s with S3_CALL_TIMEOUT=%s: Validate() = %v, want ok=%v", tc.minAge, tc.s3Timeout, err, tc.ok)
		}
	}
}

// AUTH_AUDIENCES set to nothing means the API server's own audience (plain
// ServiceAccount tokens, during a migration), not the default.
func TestEmptyAudiencesMeansTheAPIServers(t *testing.T) {
	t.Parallel()
	c, err := Load(lookup(map[string]string{"AUTH_AUDIENCES": ""}))
	if err != nil || len(c.AuthAudiences) != 0 {
		t.Fatalf("= %v, %v; want no audiences", c.AuthAudiences, err)
	}
	c, err = Load(lookup(map[string]string{"AUTH_AUDIENCES": "a, b"}))
	if err != nil || strings.Join(c.AuthAudiences, ",") != "a,b" {
		t.Fatalf("= %v, %v", c.AuthAudiences, err)
	}
}

// Settings whose 0 means "no bound" accept it (the e2e suite and the
// benchmarks run with KEPT_SESSIONS_PER_USER=0).
func TestZeroMeansNoBound(t *testing.T) {
	t.Parallel()
	c, err := Load(lookup(map[string]string{"KEPT_SESSIONS_PER_USER": "0"}))
	if err != nil || c.KeptSessionsPerUser != 0 {
		t.Fatalf("KEPT_SESSIONS_PER_USER=0: %v, %d", err, c.KeptSessionsPerUser)
	}
}

// One source of certificates, and nothing to publish without one.
func TestTLSSources(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		fail string // the setting the error names; empty: valid
	}{
		{map[string]string{"TLS_CA_SECRET": "ca", "TLS_DNS_NAMES": "a.svc", "TLS_CA_CONFIGMAP": "ca"}, ""},
		{map[string]string{"TLS_CERT_FILE": "/c", "TLS_KEY_FILE": "/k", "TLS_CA_CONFIGMAP": "ca"}, ""},
		{map[string]string{"TLS_CA_SECRET": "ca"}, "TLS_DNS_NAMES"},
		{map[string]string{"TLS_CA_SECRET": "ca", "TLS_DNS_NAMES": "a.svc", "TLS_CERT_FILE": "/c", "TLS_KEY_FILE": "/k"}, "TLS_CA_SECRET"},
		{map[string]string{"TLS_CA_CONFIGMAP": "ca"}, "TLS_CA_CONFIGMAP"},
	} {
		env := map[string]string{"DATABASE_URL": "postgres://x", "REDIS_URL": "redis://x", "S3_BUCKET": "b"}
		for k, v := range tc.env {
			env[k] = v
		}
		c, err := Load(lookup(env))
		if err == nil {
			err = c.Validate()
		}
		switch {
		case tc.fail == "" && err != nil:
			t.Errorf("%v: %v", tc.env, err)
		case tc.fail != "" && (err == nil || !strings.Contains(err.Error(), tc.fail)):
			t.Errorf("%v: Validate() = %v, want an error naming %s", tc.env, err, tc.fail)
		}
	}
}
