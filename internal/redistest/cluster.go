package redistest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/herdcap/herdcap/internal/redisserver"
)

// clusterSlots are the slot ranges of the three masters.
var clusterSlots = [3][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}}

// Cluster is a real Redis Cluster of three masters without replicas, each a
// private Server on loopback (its own data port and cluster bus port),
// serving slots 0-5460, 5461-10922 and 10923-16383 in that order. Its
// methods are safe for concurrent use. On a nil *Cluster (StartClusterMain
// found no redis-server) the methods taking a testing.TB skip or fail the
// test as Require does; Addrs and Nodes panic.
type Cluster struct {
	nodes   []*Server
	timeout time.Duration // WithStartTimeout
	once    sync.Once
}

// StartCluster starts a three-master cluster for tb, waits until every node
// reports cluster_state:ok and knows all three masters, and registers a
// tb.Cleanup that stops every node. If redis-server is missing it applies
// Require; any other failure fails the test with the nodes' logs.
func StartCluster(tb testing.TB, opts ...Option) *Cluster {
	tb.Helper()
	if err := Available(); err != nil {
		requireFailed(tb, err)
		return nil
	}
	c, err := startCluster(opts)
	if err != nil {
		tb.Fatalf("%v", err)
		return nil
	}
	tb.Cleanup(c.Stop)
	routeLogs(tb, c.Addrs()...)
	return c
}

// StartClusterMain starts a three-master cluster for a whole test package,
// from TestMain, and returns it with a stop function to call after m.Run
// (never nil, safe to call more than once). If redis-server is missing the
// error wraps ErrNoRedis and the cluster is nil; TestMain treats it as
// described for StartMain in the package doc.
func StartClusterMain(opts ...Option) (*Cluster, func(), error) {
	if err := Available(); err != nil {
		return nil, func() {}, err
	}
	c, err := startCluster(opts)
	if err != nil {
		return nil, func() {}, err
	}
	return c, c.Stop, nil
}

func startCluster(opts []Option) (*Cluster, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	c := &Cluster{timeout: cfg.startTimeout}
	for range clusterSlots {
		s, err := startServer(opts, true)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.nodes = append(c.nodes, s)
	}
	if err := c.form(); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// form assigns slots, introduces the nodes to each other and waits until all
// of them agree the cluster is healthy.
func (c *Cluster) form() error {
	for i, n := range c.nodes {
		// Distinct config epochs up front spare the nodes an epoch
		// collision round, as redis-cli --cluster create does.
		_, err := n.srv.Do("CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i+1))
		if err == nil {
			lo, hi := clusterSlots[i][0], clusterSlots[i][1]
			_, err = n.srv.Do("CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi))
		}
		if err != nil {
			return fmt.Errorf("redistest: cluster: configure node %s: %w", n.Addr(), err)
		}
	}
	for _, n := range c.nodes[1:] {
		_, err := c.nodes[0].srv.Do("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(n.srv.Port()), strconv.Itoa(n.srv.BusPort()))
		if err != nil {
			return fmt.Errorf("redistest: cluster: CLUSTER MEET: %w", err)
		}
	}
	return c.awaitHealthy()
}

// awaitHealthy polls healthy until it passes or the start timeout ends.
func (c *Cluster) awaitHealthy() error {
	deadline := time.Now().Add(c.timeout)
	for {
		err := c.healthy()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: cluster not healthy after %v: %v%s", c.timeout, err, c.logTails())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitHealthy waits until every node reports cluster_state:ok with all
// 16384 slots served by three known masters, as StartCluster does, e.g.
// after restarting a node. It fails the test if that takes longer than the
// start timeout (WithStartTimeout, default DefaultStartTimeout) or a node is
// killed or paused. Redis keeps a restarted master out of service for about
// 2 s, and its peers may need up to twice cluster-node-timeout (2 s) to
// clear a failure flag, so expect a few seconds.
func (c *Cluster) WaitHealthy(tb testing.TB) {
	tb.Helper()
	if c == nil {
		nilUse(tb, "Cluster")
		return
	}
	if err := c.awaitHealthy(); err != nil {
		tb.Fatalf("%v", err)
	}
}

// healthy returns nil once every node reports cluster_state:ok with all
// slots served by three known masters.
func (c *Cluster) healthy() error {
	want := map[string]string{
		"cluster_state":          "ok",
		"cluster_slots_assigned": "16384",
		"cluster_slots_ok":       "16384",
		"cluster_known_nodes":    "3",
		"cluster_size":           "3",
	}
	for _, n := range c.nodes {
		reply, err := n.srv.Do("CLUSTER", "INFO")
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Addr(), err)
		}
		info, ok := reply.(string)
		if !ok {
			return fmt.Errorf("node %s: CLUSTER INFO: unexpected reply %T", n.Addr(), reply)
		}
		for k, v := range want {
			if got, _ := redisserver.InfoField(info, k); got != v {
				return fmt.Errorf("node %s: %s:%s, want %s", n.Addr(), k, got, v)
			}
		}
	}
	return nil
}

func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, n := range c.nodes {
		fmt.Fprintf(&b, "\nlog of %s:\n%s", n.Addr(), n.srv.LogTail())
	}
	return b.String()
}

// Addrs returns the masters' addresses, "127.0.0.1:PORT", in slot order.
// It panics on a nil *Cluster rather than return no address.
func (c *Cluster) Addrs() []string {
	if c == nil {
		panic(errNilCluster)
	}
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Nodes returns the masters as Servers, in slot order, for per-node fault
// control (Kill, Pause, Restart ...). A restarted node keeps its identity
// and slots (nodes.conf stays in its directory) but not its data, and
// Restart returns when it answers PING, not when the cluster is healthy
// again. Stopping a node directly is allowed; Cluster.Stop still works.
//
// It panics on a nil *Cluster.
func (c *Cluster) Nodes() []*Server {
	if c == nil {
		panic(errNilCluster)
	}
	return append([]*Server(nil), c.nodes...)
}

// errNilCluster is the panic value of Addrs and Nodes on a nil *Cluster.
var errNilCluster = errors.New("redistest: use of a nil *Cluster (StartClusterMain failed?); call redistest.Require(t) or cl.Client(t) first")

// ClusterOptions returns a new copy of the options Client uses, so callers
// can tune them: the masters' addresses as seeds, ContextTimeoutEnabled,
// DialTimeout ClientDialTimeout with a single dial attempt,
// Read/WriteTimeout ClientIOTimeout, the go-redis cluster defaults for
// retries and redirects, CLIENT SETINFO and maintenance notifications off.
// It returns nil for a nil *Cluster.
func (c *Cluster) ClusterOptions() *redis.ClusterOptions {
	if c == nil {
		return nil
	}
	return &redis.ClusterOptions{
		Addrs:                    c.Addrs(),
		ContextTimeoutEnabled:    true,
		DialTimeout:              ClientDialTimeout,
		DialerRetries:            1,
		ReadTimeout:              ClientIOTimeout,
		WriteTimeout:             ClientIOTimeout,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}

// Client returns a new cluster client built from ClusterOptions and closes
// it in tb.Cleanup.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	if c == nil {
		nilUse(tb, "Cluster")
		return nil
	}
	routeLogs(tb, c.Addrs()...)
	cc := redis.NewClusterClient(c.ClusterOptions())
	tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

// Flush sends FLUSHALL to every master, each after the identity check of
// Server.Flush. It fails the test if a node is killed, paused or stopped.
func (c *Cluster) Flush(tb testing.TB) {
	tb.Helper()
	if c == nil {
		nilUse(tb, "Cluster")
		return
	}
	var errs []error
	for _, n := range c.nodes {
		errs = append(errs, flush(n.srv))
	}
	if err := errors.Join(errs...); err != nil {
		tb.Fatalf("%v", err)
	}
}

// Stop stops every node as Server.Stop does. It is idempotent.
func (c *Cluster) Stop() {
	if c == nil {
		return
	}
	c.once.Do(func() {
		for _, n := range c.nodes {
			n.Stop()
		}
	})
}
