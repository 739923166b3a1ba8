// Package session holds the domain rules of an upload session that need neither
// Kubernetes nor a database: part sizing, spec validation, file ids, slugs and
// lock staleness. Adapters and the reconciler call into it; it calls nothing out.
package session
