package aggregate

import (
	"testing"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
)

// TestMeasuredDisplacesStoredEstimate: the proxy's estimate of a call (its stream was cut off)
// is stored first; a measured report of the same call that comes later — here from an API
// key, which ranks below the proxy — displaces it, and a later estimate changes nothing.
func TestMeasuredDisplacesStoredEstimate(t *testing.T) {
	e := newEnv(t)
	e.start(t, nil)
	rid := "chatcmpl-cut"
	estimate := report("proxy-openai-"+rid, "openai", rid, 2_400_000_000)
	estimate.Source, estimate.Estimated, estimate.EstimateReason = batch.SourceProxy, true, "cut_stream"
	estimate.Tokens.Input, estimate.Tokens.CachedInput, estimate.Tokens.Output = 800, 0, 40
	e.publish(t, estimate)
	waitFor(t, "the estimate written", func() bool { return e.count(t) == "1" })

	measured := report("sdk-1", "openai", rid, 3_500_000_000)
	measured.Source = batch.SourceKey + "search-prod"
	e.publish(t, measured)
	waitFor(t, "the measured report written", func() bool { return e.count(t) == "2" })
	again := estimate
	again.ID, again.EstimateReason = "proxy-openai-"+rid+"-2", "client_gone"
	e.publish(t, again)
	e.waitDrained(t)

	if got, want := e.rolledUp(t), "1 0.003500000000 1200"; got != want {
		t.Errorf("spend_1d events, cost, input tokens = %s, want %s (the measured report alone)", got, want)
	}
	if got, want := e.query(t, "SELECT arrayStringConcat(arraySort(groupArray(concat(event_id, '/', toString(estimated), '/', estimate_reason))), ',') FROM {db}.usage_events"),
		"proxy-openai-chatcmpl-cut/1/cut_stream,sdk-1/0/"; got != want {
		t.Errorf("usage_events = %s, want %s", got, want)
	}
	if got, want := e.query(t, "SELECT arrayStringConcat(arraySort(groupArray(concat(kept_event_id, '>', dropped_event_id, ' ', reason, ' ', toString(displaced)))), ',') FROM {db}.usage_conflicts"),
		"sdk-1>proxy-openai-chatcmpl-cut measured 1,sdk-1>proxy-openai-chatcmpl-cut-2 measured 0"; got != want {
		t.Errorf("usage_conflicts = %s, want %s", got, want)
	}
	if got, want := e.query(t, "SELECT concat(toString(sum(events)), ' ', toString(sum(estimated_events))) FROM {db}.metered_share"), "1 0"; got != want {
		t.Errorf("metered_share events, estimated = %s, want %s", got, want)
	}
}
