package redistest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/redistest"
)

// crc16 is CRC-16/XMODEM, the checksum Redis Cluster maps keys with; written
// here so the test predicts slots independently of client and server.
func crc16(s string) uint16 {
	var crc uint16
	for i := range len(s) {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// slot returns the cluster slot of a key without hash tags.
func slot(key string) int { return int(crc16(key) % 16384) }

// keyPerSlot returns one key for every one of the 16384 slots.
func keyPerSlot() []string {
	keys := make([]string, 16384)
	left := len(keys)
	for i := 0; left > 0; i++ {
		k := fmt.Sprint("key:", i)
		if s := slot(k); keys[s] == "" {
			keys[s] = k
			left--
		}
	}
	return keys
}

// masterOf returns the node index that serves slot s in a redistest Cluster.
func masterOf(s int) int {
	switch {
	case s <= 5460:
		return 0
	case s <= 10922:
		return 1
	default:
		return 2
	}
}

func TestCluster(t *testing.T) {
	t.Parallel() // each cluster spends ~2 s in Redis's writable delay
	start := time.Now()
	c := redistest.StartCluster(t)
	t.Logf("cluster ready in %v", time.Since(start))

	addrs := c.Addrs()
	require.Len(t, addrs, 3)
	assert.Len(t, map[string]bool{addrs[0]: true, addrs[1]: true, addrs[2]: true}, 3)
	nodes := c.Nodes()
	require.Len(t, nodes, 3)
	assert.True(t, c.ClusterOptions().ContextTimeoutEnabled)

	cc := c.Client(t)
	ctx := cmdCtx(t)
	require.NoError(t, cc.Ping(ctx).Err())

	// The server agrees with our slot function, and with the harness's
	// slot ranges.
	for _, k := range []string{"a", "b", "user:1", "key:42"} {
		got, err := cc.ClusterKeySlot(ctx, k).Result()
		require.NoError(t, err)
		assert.Equal(t, int64(slot(k)), got, k)
	}
	shards, err := cc.ClusterShards(ctx).Result()
	require.NoError(t, err)
	require.Len(t, shards, 3)
	for _, sh := range shards {
		require.Len(t, sh.Slots, 1)
		require.Len(t, sh.Nodes, 1, "no replicas")
		lo, hi := int(sh.Slots[0].Start), int(sh.Slots[0].End)
		i := masterOf(lo)
		assert.Equal(t, masterOf(hi), i)
		assert.Equal(t, "master", sh.Nodes[0].Role)
		assert.Equal(t, "online", sh.Nodes[0].Health)
		assert.Equal(t, addrs[i], fmt.Sprintf("%s:%d", sh.Nodes[0].IP, sh.Nodes[0].Port), "slots %d-%d", lo, hi)
	}

	// SET and GET one key in every slot through the cluster client.
	keys := keyPerSlot()
	_, err = cc.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Set(ctx, k, k, 0)
		}
		return nil
	})
	require.NoError(t, err)
	cmds, err := cc.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Get(ctx, k)
		}
		return nil
	})
	require.NoError(t, err)
	for i, cmd := range cmds {
		require.Equal(t, keys[i], cmd.(*redis.StringCmd).Val())
	}

	// Each master holds exactly the keys of its slot range.
	var want [3]int64
	for s := range keys {
		want[masterOf(s)]++
	}
	for i, n := range nodes {
		got, err := n.Client(t).DBSize(ctx).Result()
		require.NoError(t, err)
		assert.Equal(t, want[i], got, "keys on master %d", i)
		assert.Positive(t, got)
	}

	c.Flush(t)
	for i, n := range nodes {
		assert.Zero(t, n.Client(t).DBSize(ctx).Val(), "master %d after Flush", i)
	}
}

func TestClusterStopCleansUp(t *testing.T) {
	t.Parallel() // each cluster spends ~2 s in Redis's writable delay
	var pids []int
	var dirs []string
	t.Run("owner", func(t *testing.T) {
		c := redistest.StartCluster(t)
		for _, n := range c.Nodes() {
			pids = append(pids, n.PID())
			dirs = append(dirs, n.Dir())
		}
		c.Nodes()[1].Pause(t)
	})
	require.Len(t, pids, 3)
	for i := range pids {
		requireGone(t, pids[i])
		assert.NoDirExists(t, dirs[i])
	}
}

func TestStartClusterMain(t *testing.T) {
	t.Parallel() // each cluster spends ~2 s in Redis's writable delay
	c, stop, err := redistest.StartClusterMain()
	require.NoError(t, err)
	defer stop()
	cc := redis.NewClusterClient(c.ClusterOptions())
	ctx, cancel := context.WithTimeout(context.Background(), ctxTimeout)
	defer cancel()
	require.NoError(t, cc.Set(ctx, "k", "v", 0).Err())
	assert.Equal(t, "v", cc.Get(ctx, "k").Val())
	require.NoError(t, cc.Close())
	pid := c.Nodes()[0].PID()
	stop()
	stop()
	requireGone(t, pid)
}

func TestClusterNodeRestart(t *testing.T) {
	t.Parallel() // cluster start and node recovery spend seconds waiting on Redis
	c := redistest.StartCluster(t)
	cc := c.Client(t)
	keys := keyPerSlot()
	k0, k1 := keys[0], keys[6000] // on masters 0 and 1
	require.NoError(t, cc.Set(cmdCtx(t), k0, "a", 0).Err())
	require.NoError(t, cc.Set(cmdCtx(t), k1, "b", 0).Err())

	n1 := c.Nodes()[1]
	n1.Kill(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	assert.Error(t, cc.Get(ctx, k1).Err(), "master 1 is down")

	n1.Restart(t)
	c.WaitHealthy(t)
	// The node rejoined with its slots (nodes.conf) but an empty dataset.
	assert.ErrorIs(t, cc.Get(cmdCtx(t), k1).Err(), redis.Nil)
	assert.Equal(t, "a", cc.Get(cmdCtx(t), k0).Val())
	require.NoError(t, cc.Set(cmdCtx(t), k1, "c", 0).Err())
	assert.Equal(t, "c", cc.Get(cmdCtx(t), k1).Val())
}
