package session

import "testing"

func TestTenantOf(t *testing.T) {
	t.Parallel()
	for user, want := range map[string]string{
		"system:serviceaccount:team-a:builder": "namespace:team-a",
		"system:serviceaccount:team-a:bot-49":  "namespace:team-a",
		"system:serviceaccount:team-b:builder": "namespace:team-b",
		"alice@example.com":                    "user:alice@example.com",
		"system:serviceaccount::x":             "user:system:serviceaccount::x",
		"namespace:team-a":                     "user:namespace:team-a",
	} {
		if got := TenantOf(user); got != want {
			t.Errorf("TenantOf(%q) = %q, want %q", user, got, want)
		}
	}
}
