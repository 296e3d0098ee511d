package redisserver

// ProbeAs runs the readiness and identity check as if the server were
// process pid.
func (s *Server) ProbeAs(pid int) error { return s.probe(pid) }

// ErrPortTaken is the error of an identity check that met another process.
var ErrPortTaken = errPortTaken
