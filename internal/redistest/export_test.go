package redistest

import "github.com/herdcap/herdcap/internal/redisserver"

// Dir returns the server's temporary directory, for cleanup checks.
func (s *Server) Dir() string { return s.srv.Dir() }

// PIDAlive reports whether a process with pid exists (zombies included).
var PIDAlive = redisserver.ProcessExists
