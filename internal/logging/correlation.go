package logging

import "regexp"

var correlationID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// ValidCorrelationID reports whether id may go on log lines as a correlation
// id: a short token of letters, digits and ._:- only. Ids come from request
// headers and from an annotation anyone who may edit the resource can write;
// anything else could forge log lines or bloat them.
func ValidCorrelationID(id string) bool { return correlationID.MatchString(id) }
