package loadgen

import "strconv"

// UnknownProvider and UnknownModel name the model no price catalogue knows; events naming it
// are valid and must be stored unpriced.
const (
	UnknownProvider = "acme"
	UnknownModel    = "acme-llm-7"
)

// model describes one base model the fleet calls. The weights are a rough picture of
// popularity in late 2025: small, cheap models carry most calls.
type model struct {
	provider string
	name     string
	// snapshot is the dated name the provider also reports; a share of calls uses it so the
	// enricher's alias mapping is exercised.
	snapshot string
	weight   float64
	// reasoning models bill hidden reasoning tokens as part of the output.
	reasoning bool
}

const (
	openai    = "openai"
	anthropic = "anthropic"
)

var models = [...]model{
	{openai, "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 18, false},
	{openai, "gpt-4o", "gpt-4o-2024-08-06", 10, false},
	{openai, "gpt-4.1", "gpt-4.1-2025-04-14", 6, false},
	{openai, "gpt-4.1-mini", "gpt-4.1-mini-2025-04-14", 10, false},
	{openai, "gpt-5", "gpt-5-2025-08-07", 6, true},
	{openai, "gpt-5-mini", "gpt-5-mini-2025-08-07", 8, true},
	{openai, "o4-mini", "o4-mini-2025-04-16", 4, true},
	{openai, "o3", "o3-2025-04-16", 2, true},
	{anthropic, "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", 14, false},
	{anthropic, "claude-haiku-4-5", "claude-haiku-4-5-20251001", 8, false},
	{anthropic, "claude-opus-4-1", "claude-opus-4-1-20250805", 2, false},
	{anthropic, "claude-3-5-haiku", "claude-3-5-haiku-20241022", 6, false},
}

func modelIndex(name string) int {
	for i, m := range models {
		if m.name == name {
			return i
		}
	}
	return -1
}

// teamNames are the first teams; more are called team-NN.
var teamNames = [...]string{
	"search", "support", "sales", "growth", "data-platform", "risk",
	"legal", "onboarding", "docs", "billing", "recommendations", "security",
	"analytics", "people", "marketing", "infra",
}

func teamName(i int) string {
	if i < len(teamNames) {
		return teamNames[i]
	}
	return "team-" + strconv.Itoa(i+1)
}

func teamIndex(name string, teams int) int {
	for i := range teams {
		if teamName(i) == name {
			return i
		}
	}
	return -1
}

// feature is a kind of LLM call with its own token profile: medians of a log-normal
// distribution, whose long right tail produces the occasional huge prompt.
type feature struct {
	name              string
	inMedian, inSigma float64
	outMedian         float64
	// workflowShare is the share of calls that belong to a multi-call workflow (an agent
	// run, a ticket), which the cost-per-outcome views group by.
	workflowShare float64
	workflowKind  string
}

var features = [...]feature{
	{"summarize", 3000, 1.0, 300, 0.1, "doc"},
	{"classify", 600, 0.7, 12, 0, ""},
	{"extract", 2000, 0.9, 220, 0.2, "doc"},
	{"chat-assist", 1500, 1.1, 400, 0.6, "session"},
	{"draft-reply", 1200, 0.8, 350, 0.8, "ticket"},
	{"rerank", 800, 0.6, 20, 0, ""},
	{"translate", 900, 0.9, 900, 0.1, "doc"},
	{"code-review", 6000, 1.2, 700, 0.7, "pr"},
	{"agent", 8000, 1.3, 600, 1, "run"},
	{"qa-bot", 2500, 1.0, 300, 0.5, "session"},
	{"report-gen", 4000, 1.0, 1500, 0.3, "report"},
	{"triage", 1000, 0.8, 60, 0.9, "ticket"},
}

// hourWeight is the relative traffic per hour of the day (UTC, where the simulated company
// lives): a quiet night, a morning ramp, a working-day plateau with a lunch dip, and a long
// evening tail from background jobs.
var hourWeight = [24]float64{
	0.30, 0.25, 0.22, 0.22, 0.25, 0.35, 0.55, 0.90, // 00–07
	1.50, 1.90, 2.00, 1.95, 1.60, 1.80, 1.95, 1.90, // 08–15
	1.70, 1.40, 1.00, 0.80, 0.65, 0.55, 0.45, 0.35, // 16–23
}

// Working hours, used by the tests to check the diurnal shape.
const workStart, workEnd = 8, 18
