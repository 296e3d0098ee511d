// Package redistest starts private redis-server processes on ephemeral
// loopback ports for tests and gives them go-redis v9 clients and fault
// controls.
//
// The processes themselves are run by internal/redisserver, which commands
// such as stormsim use directly; this package adds what tests need on top:
// testing.TB lifetimes, the skip-or-fail rule, go-redis clients and log
// routing, clusters and goleak options. Only tests may import it.
//
// # Private servers only
//
// The harness never talks to a Redis it did not start: not the one on
// 127.0.0.1:6379, not one named by an environment variable, not one that
// happens to answer on a port it chose. Every server it starts is checked
// by process id (INFO server) before any command other than PING and INFO is
// sent, and FLUSHALL is sent only after the same check. Tests in this module
// reach Redis only through this package.
//
// # Lifetimes
//
// [Start] and [StartCluster] give a server to one test and stop it in
// tb.Cleanup; [StartMain] and [StartClusterMain] give one to a whole package
// from TestMain and return the stop function. Every server runs with
// --save "" --appendonly no in its own temporary directory, in its own
// process group, and on Linux is killed by the kernel if the test binary dies
// without running its cleanups. Cleanup kills the process, reaps it and
// removes the directory, also after a failure or a panic. No goroutine is
// left running: processes are watched with non-blocking wait4 calls.
//
// # Faults
//
// [Server.Kill] (SIGKILL), [Server.Restart] (same port, empty dataset),
// [Server.Pause] (SIGSTOP: connections stay open, nothing answers) and
// [Server.Resume] (SIGCONT) may be called in any order and any number of
// times. The clients from [Server.Client] and [Cluster.Client] use
// ContextTimeoutEnabled, a short dial timeout and no command retries, so a
// fault shows up on the first command and a context deadline bounds every
// call. For a cluster, [Cluster.Nodes] gives each master's Server for the
// same controls and [Cluster.WaitHealthy] waits until the cluster recovers.
// Packages whose tests kill servers under load should pass [LeakOptions] to
// goleak: go-redis keeps a redial probe alive for up to a second after Close.
//
// # go-redis's log lines
//
// go-redis logs through one process-wide logger, and a test that kills a
// server makes it log every failed dial. Once the harness has started a
// server it routes those lines instead: each goes to the log of the tests
// that started or hold a client of the server it names (Start, StartCluster,
// Server.Client, Cluster.Client), shown when such a test fails or under -v;
// a line naming no such server goes to every registered test. Set
// HERDCAP_REDIS_LOG=1 to also see every line on stderr.
//
// # When redis-server is missing
//
// [Require] holds the one rule: if redis-server is not in PATH, a test is
// skipped, or fails when the environment variable CI is non-empty, with a
// message naming the install command (apt-get install -y redis-server).
// [Start] and [StartCluster] apply it themselves. [StartMain] and
// [StartClusterMain] return an error wrapping [ErrNoRedis]; TestMain should
// then run the tests anyway with a nil server, whose methods apply the same
// rule on first use:
//
//	var srv *redistest.Server
//
//	func TestMain(m *testing.M) {
//		s, stop, err := redistest.StartMain()
//		if err != nil && !errors.Is(err, redistest.ErrNoRedis) {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//		srv = s
//		code := m.Run()
//		stop()
//		if code == 0 {
//			if err := goleak.Find(redistest.LeakOptions()...); err != nil {
//				fmt.Fprintln(os.Stderr, err)
//				code = 1
//			}
//		}
//		os.Exit(code)
//	}
//
// [Main] is that TestMain for a package that also shares a cluster:
// func TestMain(m *testing.M) { os.Exit(redistest.Main(m, &srv, &cluster)) }.
//
//	func TestSomething(t *testing.T) {
//		c := srv.Client(t) // skips (or fails under CI) when srv is nil
//		...
//	}
package redistest
