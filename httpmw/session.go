package httpmw

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/herdcap/herdcap/internal/serverside"
	"github.com/herdcap/herdcap/internal/wire"
)

// sessionKey returns the client-ID function of Admit and Invalidate: key,
// if set, or by default the Herdcap-Client header when the request carries
// one, else the client's address by ip. A malformed Herdcap-Client is
// ErrNoKey (400). It checks that key and a non-zero ip are not both set;
// errors name the fields after path ("AdmitConfig").
func sessionKey(path string, key func(*http.Request) (string, error), ip ClientIP) (func(*http.Request) (string, error), error) {
	if key != nil {
		if !ip.isZero() {
			return nil, fmt.Errorf("%s.ClientIP configures the default key, which %s.Key replaces; set one or the other", path, path)
		}
		return key, nil
	}
	c, err := ip.build(path + ".ClientIP")
	if err != nil {
		return nil, err
	}
	return func(r *http.Request) (string, error) {
		if lines, ok := r.Header[headerClient]; ok {
			id, err := wire.ParseClientID(lines)
			if err != nil {
				return "", fmt.Errorf("%w: %s: %w", ErrNoKey, headerClient, err)
			}
			return id, nil
		}
		return c.key(r)
	}, nil
}

// sessionCommon is the configuration Admit and Invalidate give the core.
func sessionCommon(component string, skip func(*http.Request) bool, log *slog.Logger) serverside.Common[*http.Request] {
	return serverside.Common[*http.Request]{Skip: skip, Keys: serverside.Keys{NoKey: ErrNoKey}, Logger: log,
		Names: serverside.Names{Component: component, BadRequest: "400", Unavailable: "503", Internal: "500"}}
}
