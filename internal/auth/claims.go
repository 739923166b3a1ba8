package auth

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Refusals decided from the token's own claims, without a TokenReview. The
// signature is not checked here (only the API server can): these claims
// only ever refuse, never admit, so a forged claim gains nothing.
var (
	ErrTokenExpired     = fmt.Errorf("%w: expired", ErrUnauthenticated)
	ErrTokenNotYetValid = fmt.Errorf("%w: not yet valid", ErrUnauthenticated)
	ErrTokenAudience    = fmt.Errorf("%w: no accepted audience", ErrUnauthenticated)
	ErrTokenIssuer      = fmt.Errorf("%w: issuer not accepted", ErrUnauthenticated)
)

// claimLeeway allows for clock skew between this replica and the token's
// issuer: a token is refused locally only when it is wrong by more than this,
// leaving the borderline cases to the API server.
const claimLeeway = time.Minute

type claims struct {
	Exp *json.Number `json:"exp"`
	Nbf *json.Number `json:"nbf"`
	Iss string       `json:"iss"`
	Aud audience     `json:"aud"`
}

// audience is a JWT's "aud": one string or a list of them.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*a = audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*a = many
	return nil
}

// parseClaims decodes a JWT's payload; ok is false when there is none to
// decode (an opaque token, or a JWT whose payload is not a JSON object).
func parseClaims(token string) (claims, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return claims{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return claims{}, false
	}
	d := json.NewDecoder(strings.NewReader(string(payload)))
	d.UseNumber()
	var c claims
	if err := d.Decode(&c); err != nil {
		return claims{}, false
	}
	return c, true
}

// checkClaims refuses a token whose claims say it cannot pass the review:
// expired, not yet valid, bound to none of audiences, or (when issuers is
// set) issued by another. A claim that is absent refuses nothing: legacy
// ServiceAccount tokens carry no exp or aud, and the review decides them.
func checkClaims(c claims, now time.Time, audiences, issuers []string) error {
	if t, ok := unixTime(c.Exp); ok && now.After(t.Add(claimLeeway)) {
		return ErrTokenExpired
	}
	if t, ok := unixTime(c.Nbf); ok && now.Add(claimLeeway).Before(t) {
		return ErrTokenNotYetValid
	}
	if len(audiences) > 0 && len(c.Aud) > 0 && !slices.ContainsFunc(c.Aud, func(a string) bool { return slices.Contains(audiences, a) }) {
		return ErrTokenAudience
	}
	if len(issuers) > 0 && !slices.Contains(issuers, c.Iss) {
		return ErrTokenIssuer
	}
	return nil
}

func unixTime(n *json.Number) (time.Time, bool) {
	if n == nil {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}
