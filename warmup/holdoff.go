package warmup

import (
	"sync"
	"time"
)

// holdoff remembers recent deletes, at most max of them.
type holdoff struct {
	d   time.Duration
	max int

	mu    sync.Mutex
	at    map[string]time.Time
	floor time.Time // the newest forgotten delete
}

func (h *holdoff) deleted(key string, now time.Time) {
	if h.d <= 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.at == nil {
		h.at = map[string]time.Time{}
	}
	if _, ok := h.at[key]; !ok && len(h.at) >= h.max {
		// Forget what no longer holds anything off; if all still do,
		// forget them all and hold off everything read before the newest.
		for k, t := range h.at {
			if now.Sub(t) >= h.d {
				delete(h.at, k)
			}
		}
		if len(h.at) >= h.max {
			for _, t := range h.at {
				if t.After(h.floor) {
					h.floor = t
				}
			}
			clear(h.at)
		}
	}
	h.at[key] = now
}

// holds reports whether a value of key read at readAt must not be stored.
func (h *holdoff) holds(key string, readAt time.Time) bool {
	if h.d <= 0 {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.floor.IsZero() && readAt.Before(h.floor.Add(h.d)) {
		return true
	}
	t, ok := h.at[key]
	return ok && readAt.Before(t.Add(h.d))
}
