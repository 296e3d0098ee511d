package redistest

// Dir returns the server's temporary directory, for cleanup checks.
func (s *Server) Dir() string { return s.dir }

// PIDAlive reports whether a process with pid exists (zombies included).
var PIDAlive = pidAlive
