package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/mocs-dev/upload-operator/internal/session"
)

const maxJSONBody = 1 << 20

// decodeJSON reads a JSON body into v; problems, wrong types included, come
// back as VALIDATION_ERROR details.
func decodeJSON(r *http.Request, v any) []session.FieldError {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxJSONBody))
	err := dec.Decode(v)
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case err == nil:
		if dec.More() {
			return []session.FieldError{{Field: "body", Message: "must be a single JSON object"}}
		}
		return nil
	case errors.Is(err, io.EOF):
		return []session.FieldError{{Field: "body", Message: "is required"}}
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return []session.FieldError{{Field: field, Message: fmt.Sprintf("must be %s, not %s", jsonType(typeErr.Type.Kind().String()), typeErr.Value)}}
	case errors.As(err, &syntaxErr):
		return []session.FieldError{{Field: "body", Message: fmt.Sprintf("invalid JSON at offset %d", syntaxErr.Offset)}}
	default:
		return []session.FieldError{{Field: "body", Message: "invalid JSON: " + err.Error()}}
	}
}

func jsonType(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"), strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "string":
		return "a string"
	case kind == "slice":
		return "an array"
	case kind == "struct", kind == "map", kind == "ptr":
		return "an object"
	case kind == "bool":
		return "a boolean"
	}
	return kind
}

func validationError(w http.ResponseWriter, details []session.FieldError) {
	writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", map[string]any{"details": details})
}
