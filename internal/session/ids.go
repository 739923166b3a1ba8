package session

import (
	"strconv"

	"github.com/google/uuid"
)

// FileID derives a file's id from its session and position. Deterministic so
// that activating a session twice (a retried reconcile, a crash in between)
// names the same rows and S3 keys instead of creating new ones.
func FileID(sessionID uuid.UUID, index int) uuid.UUID {
	return uuid.NewSHA1(sessionID, []byte("file/"+strconv.Itoa(index)))
}

// ObjectKey is the S3 key of a file: under the session so one prefix lists (and
// cleans up) everything a session ever created.
func ObjectKey(sessionID, fileID uuid.UUID, name string) string {
	return SessionPrefix(sessionID) + fileID.String() + "/" + name
}

// SessionPrefix is the S3 key prefix of all objects and uploads of a session.
func SessionPrefix(sessionID uuid.UUID) string {
	return SessionsPrefix + sessionID.String() + "/"
}

// SessionsPrefix is where every session's objects and uploads live.
const SessionsPrefix = "sessions/"
