package session

import "strings"

// TenantOf is whose share of a replica's capacity a user draws on: the
// ServiceAccounts of one namespace are one tenant (a tenant that makes 50 of
// them gets one share, not 50), any other user is a tenant of its own.
func TenantOf(user string) string {
	if rest, ok := strings.CutPrefix(user, "system:serviceaccount:"); ok {
		if ns, _, ok := strings.Cut(rest, ":"); ok && ns != "" {
			return "namespace:" + ns
		}
	}
	return "user:" + user
}
