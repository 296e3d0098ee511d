package invalidate

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/herdcap/herdcap/limiter"
)

const maxCohorts = limiter.MaxCohorts

// codecMagic starts every encoded Rollout; the last byte is the version.
const codecMagic = "hci\x01"

// encodeRollout returns the stored form of a validated Rollout: the magic,
// then ID, Scope, Epoch, Cohorts, Rate, MinDuration, Clients, Coverage and
// By, strings as a uvarint length and bytes, integers as uvarints,
// floats as 8 big-endian bytes of their IEEE 754 bits. Only Go reads it; the
// Lua scripts treat it as an opaque string.
func encodeRollout(r Rollout) []byte {
	b := make([]byte, 0, len(codecMagic)+len(r.ID)+len(r.Scope)+len(r.By)+48)
	b = append(b, codecMagic...)
	b = appendString(b, r.ID)
	b = appendString(b, r.Scope)
	b = binary.AppendUvarint(b, r.Epoch)
	b = binary.AppendUvarint(b, uint64(r.Cohorts))
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(r.Rate))
	b = binary.AppendUvarint(b, uint64(r.MinDuration))
	b = binary.AppendUvarint(b, uint64(r.Clients))
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(r.Coverage))
	b = appendString(b, r.By)
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeRollout parses encodeRollout's form strictly (no trailing bytes)
// and validates the result. Anything else is ErrCorrupt.
func decodeRollout(b []byte) (Rollout, error) {
	d := decoder{b: b}
	var r Rollout
	if len(b) < len(codecMagic) || string(b[:len(codecMagic)]) != codecMagic {
		return r, corruptf("rollout record does not start with %q", codecMagic)
	}
	d.b = d.b[len(codecMagic):]
	r.ID = d.str("ID", maxIDLen)
	r.Scope = d.str("Scope", maxScopeLen)
	r.Epoch = d.uvarint("Epoch", MaxEpoch)
	r.Cohorts = int(d.uvarint("Cohorts", maxCohorts))
	r.Rate = d.float("Rate")
	r.MinDuration = time.Duration(d.uvarint("MinDuration", math.MaxInt64))
	r.Clients = int(d.uvarint("Clients", maxClients))
	r.Coverage = d.float("Coverage")
	r.By = d.str("By", maxByLen)
	if d.err == nil && len(d.b) != 0 {
		d.err = corruptf("rollout record has %d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return Rollout{}, d.err
	}
	if err := r.Validate(); err != nil {
		return Rollout{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return r, nil
}

// decoder reads fields until the first error, which it keeps.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint(field string, limit uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = corruptf("rollout record: %s is not a varint", field)
		return 0
	}
	if v > limit {
		d.err = corruptf("rollout record: %s %d is above %d", field, v, limit)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(field string, limit int) string {
	n := int(d.uvarint(field+" length", uint64(limit)))
	if d.err != nil {
		return ""
	}
	if len(d.b) < n {
		d.err = corruptf("rollout record: %s is cut short", field)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) float(field string) float64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.err = corruptf("rollout record: %s is cut short", field)
		return 0
	}
	v := math.Float64frombits(binary.BigEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// record is one stored rollout: the request as started (Epoch as asked,
// By the first requester) and its state.
type record struct {
	r  Rollout
	st state
}

// decodeRecord decodes a stored (ID, rollout, state) triple, checking that
// the parts agree.
func decodeRecord(id string, blob []byte, text string) (record, error) {
	r, err := decodeRollout(blob)
	if err != nil {
		return record{}, err
	}
	st, err := decodeState(text)
	if err != nil {
		return record{}, err
	}
	switch {
	case r.ID != id:
		return record{}, corruptf("record stored under ID %q holds rollout %q", id, r.ID)
	case st.cohorts != r.Cohorts:
		return record{}, corruptf("rollout %q: state has %d cohorts, rollout %d", id, st.cohorts, r.Cohorts)
	case r.Epoch != 0 && st.epoch != r.Epoch:
		return record{}, corruptf("rollout %q: state has epoch %d, rollout asked for %d", id, st.epoch, r.Epoch)
	}
	return record{r: r, st: st}, nil
}
