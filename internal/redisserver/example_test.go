package redisserver_test

import (
	"fmt"

	"github.com/herdcap/herdcap/internal/redisserver"
)

// Start runs a private server; Do talks to it only after checking that it is
// the process Start launched. A client would use srv.Options().
func ExampleStart() {
	srv, err := redisserver.Start(redisserver.Config{})
	if err != nil {
		fmt.Println(err) // wraps redisserver.ErrNoRedis if redis-server is missing
		return
	}
	defer srv.Stop()

	reply, err := srv.Do("PING")
	fmt.Println(reply, err)
	// Output: PONG <nil>
}
