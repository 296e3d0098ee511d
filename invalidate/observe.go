package invalidate

import (
	"sync"

	"github.com/herdcap/herdcap/observe"
)

// Rollout events: see the package doc, "Observing".

// observer is what a Coordinator knows of the rollouts it has reported.
type observer struct {
	on   func(observe.Rollout) // nil: no events
	mu   sync.Mutex            // guards seen and last; never held while on runs
	seen map[string]seenRollout
	last *view // the view last reported: an unchanged view reports nothing
}

type seenRollout struct {
	phase    Phase
	released int
}

// report reports what changed in v since the last report, a control's
// reason going with the pauses and aborts found. The caller holds no lock.
func (o *observer) report(v *view, reason string) {
	if o.on == nil || v == nil {
		return
	}
	var out []observe.Rollout
	o.mu.Lock()
	if v == o.last {
		o.mu.Unlock()
		return
	}
	o.last = v
	if o.seen == nil {
		o.seen = map[string]seenRollout{}
	}
	present := make(map[string]struct{}, len(v.recs))
	for _, r := range v.recs {
		id, st := r.r.ID, r.st
		present[id] = struct{}{}
		p, known := o.seen[id]
		o.seen[id] = seenRollout{phase: st.phase, released: st.released}
		e := observe.Rollout{ID: id, Released: st.released, Cohorts: st.cohorts}
		add := func(k observe.RolloutKind, why string) {
			e.Kind, e.Reason = k, why
			out = append(out, e)
		}
		if !known {
			if st.phase.Finished() {
				continue // over before this node saw it
			}
			add(observe.RolloutStarted, "")
			p.phase = Running
		}
		if st.released > p.released {
			add(observe.RolloutCohortReleased, "")
		}
		if st.phase == p.phase {
			continue
		}
		switch st.phase {
		case Paused:
			add(observe.RolloutPaused, reason)
		case Running:
			add(observe.RolloutResumed, reason)
		case Aborted:
			add(observe.RolloutAborted, reason)
		case Done:
			add(observe.RolloutCompleted, "")
		}
	}
	for id := range o.seen {
		if _, ok := present[id]; !ok {
			delete(o.seen, id) // purged after its retention
		}
	}
	o.mu.Unlock()
	for _, e := range out {
		o.on(e)
	}
}
