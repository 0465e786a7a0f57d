package summary_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/tokenmeter/tokenmeter/deploy/summary"
	"github.com/tokenmeter/tokenmeter/deploy/summary/summarytest"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

func TestSpendReport(t *testing.T) {
	conn := chtest.Conn(t)
	db := summarytest.Seed(t, conn, summarytest.Events())
	s, err := summary.QuerySpend(context.Background(), conn, db, summarytest.Now(), 10)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	summary.PrintSpend(&out, s)
	want := `SPEND  today 2026-11-20, month to date since 2026-11-01 (UTC days)

TODAY  $4.0000 over 3 events
     TEAM  events     cost  unpriced
  support       1  $2.2500         0
   search       2  $1.7500         0
                        MODEL  events     cost  unpriced
  anthropic/claude-sonnet-4-5       1  $2.2500         0
                openai/gpt-4o       2  $1.7500         0

MONTH TO DATE  $10.2500 over 9 events (1 unpriced)
        TEAM  events     cost  unpriced
     support       3  $6.2500         0
      search       5  $3.5000         1
  (untagged)       1  $0.5000         0
                        MODEL  events     cost  unpriced
  anthropic/claude-sonnet-4-5       3  $6.2500         0
                openai/gpt-4o       5  $4.0000         0
              acme/acme-llm-7       1  $0.0000         1

TOP MOVERS  last 7 days against the 7 before
        TEAM      now   before     change       %
     support  $2.2500  $4.0000  ▼ $1.7500  -43.8%
      search  $2.5000  $1.0000  ▲ $1.5000  150.0%
  (untagged)  $0.5000  $0.0000  ▲ $0.5000     new
                        MODEL      now   before     change       %
                openai/gpt-4o  $3.0000  $1.0000  ▲ $2.0000  200.0%
  anthropic/claude-sonnet-4-5  $2.2500  $4.0000  ▼ $1.7500  -43.8%

UNPRICED MODELS  this month: events stored without a price; add the models to the pricing catalogue
  PROVIDER  MODEL       EVENTS  FIRST DAY   LAST DAY
  acme      acme-llm-7  1       2026-11-18  2026-11-18
`
	if out.String() != want {
		t.Errorf("spend report:\n%s\nwant:\n%s", out.String(), want)
	}
}
