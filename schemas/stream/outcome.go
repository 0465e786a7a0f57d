package stream

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// The OUTCOMES stream carries workflow outcomes (POST /v1/outcomes) from the collector to the
// aggregator's outcome writer. Outcomes are few next to usage events, so the stream has one
// subject and no partitions.
const (
	Outcomes        = "OUTCOMES"
	OutcomesSubject = "outcomes.raw"
	// OutcomeSchema is the HeaderSchema of an OUTCOMES message: NDJSON of Outcome.
	OutcomeSchema = "outcomes-ndjson/1"
)

// Outcome is one validated workflow outcome as carried on OUTCOMES.
type Outcome struct {
	// ID is the idempotency key: the client's own id, else OutcomeID of the other fields.
	ID         string    `json:"id"`
	WorkflowID string    `json:"workflow_id"`
	Outcome    string    `json:"outcome"`
	Time       time.Time `json:"time"`
	ReceivedAt time.Time `json:"received_at"`
}

// OutcomeID is the id of an outcome sent without one: the first 128 bits of the SHA-256 of
// its workflow id, outcome and time (to the millisecond), in hex. The same outcome sent again
// — a client retry — gets the same id, so it is stored once.
func OutcomeID(workflowID, outcome string, t time.Time) string {
	h := sha256.New()
	h.Write([]byte(workflowID))
	h.Write([]byte{0})
	h.Write([]byte(outcome))
	h.Write([]byte{0})
	h.Write([]byte(t.UTC().Format("2006-01-02T15:04:05.000Z")))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// OutcomesMsgID is the Nats-Msg-Id of a message holding outcomes: derived from their ids
// alone, so a retried request — whose receive time differs — is still one message within
// JetStream's duplicate window.
func OutcomesMsgID(outs []Outcome) string {
	h := sha256.New()
	for _, o := range outs {
		h.Write([]byte(o.ID))
		h.Write([]byte{0})
	}
	return "outcomes:" + hex.EncodeToString(h.Sum(nil)[:16])
}

// EncodeOutcomes appends outs to dst as NDJSON, one object per line.
func EncodeOutcomes(dst []byte, outs []Outcome) ([]byte, error) {
	for i := range outs {
		line, err := json.Marshal(&outs[i])
		if err != nil {
			return dst, fmt.Errorf("encode outcome %q: %w", outs[i].ID, err)
		}
		dst = append(dst, line...)
		dst = append(dst, '\n')
	}
	return dst, nil
}

// DecodeOutcomes reads an OUTCOMES payload. Every line must be an outcome object with an id,
// a workflow id, an outcome and a time: the collector validated them, so anything else is a
// message that did not come from it, and the whole message is refused.
func DecodeOutcomes(data []byte) ([]Outcome, error) {
	var out []Outcome
	line := 0
	for len(data) > 0 {
		var l []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			l, data = data, nil
		}
		line++
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		var o Outcome
		d := json.NewDecoder(bytes.NewReader(l))
		d.DisallowUnknownFields()
		if err := d.Decode(&o); err != nil {
			return nil, fmt.Errorf("outcomes line %d: %w", line, err)
		}
		if rest := bytes.TrimSpace(l[d.InputOffset():]); len(rest) > 0 {
			return nil, fmt.Errorf("outcomes line %d: more after the JSON object", line)
		}
		switch {
		case o.ID == "":
			return nil, fmt.Errorf("outcomes line %d: id is empty", line)
		case o.WorkflowID == "":
			return nil, fmt.Errorf("outcomes line %d: workflow_id is empty", line)
		case o.Outcome == "":
			return nil, fmt.Errorf("outcomes line %d: outcome is empty", line)
		case o.Time.IsZero():
			return nil, fmt.Errorf("outcomes line %d: time is missing", line)
		}
		out = append(out, o)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("outcomes message holds no outcome")
	}
	return out, nil
}
