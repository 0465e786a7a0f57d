package summary

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
)

// ShowbackRow is one line of a monthly showback / chargeback: a month's spend of one team,
// cost centre, feature, env and model. Empty tags read Untagged.
type ShowbackRow struct {
	// Month is the first day of the month, YYYY-MM-DD.
	Month                                                string
	Team, CostCenter, Feature, Env, Provider, Model      string
	Events, InputTokens, OutputTokens                    uint64
	CachedInputTokens, CacheWriteTokens, ReasoningTokens uint64
	Cost, Savings                                        decimal.Decimal
	Unpriced                                             uint64
}

// Showback calls fn with every showback row of the month holding month (a UTC time), in the
// order team, cost centre, feature, env, provider, model. A model is named as it was priced
// (as reported when it was not).
func Showback(ctx context.Context, conn driver.Conn, db string, month time.Time, fn func(ShowbackRow) error) error {
	first := Day(month).AddDate(0, 0, 1-Day(month).Day())
	r := Range{From: first, To: first.AddDate(0, 1, -1)}
	tag := func(col string) string {
		return fmt.Sprintf("if(%[1]s = '', '%[2]s', %[1]s) AS %[1]s_k", col, Untagged)
	}
	q := fmt.Sprintf(`SELECT %s, %s, %s, %s, provider, if(model_priced = '', model, model_priced) AS model_k,
			sum(events), sum(input_tokens), sum(output_tokens), sum(cached_input_tokens), sum(cache_write_tokens), sum(reasoning_tokens),
			toString(sum(cost_usd)), toString(sum(savings_usd)), sum(unpriced_events)
		FROM %s.spend_1d WHERE day >= toDate(?) AND day <= toDate(?)
		GROUP BY team_k, cost_center_k, feature_k, env_k, provider, model_k
		ORDER BY team_k, cost_center_k, feature_k, env_k, provider, model_k`,
		tag("team"), tag("cost_center"), tag("feature"), tag("env"), db)
	rows, err := conn.Query(ctx, q, r.args()...)
	if err != nil {
		return fmt.Errorf("query showback for %s: %w", first.Format("2006-01"), err)
	}
	defer rows.Close()
	for rows.Next() {
		row := ShowbackRow{Month: first.Format(time.DateOnly)}
		var cost, savings string
		if err := rows.Scan(&row.Team, &row.CostCenter, &row.Feature, &row.Env, &row.Provider, &row.Model,
			&row.Events, &row.InputTokens, &row.OutputTokens, &row.CachedInputTokens, &row.CacheWriteTokens, &row.ReasoningTokens,
			&cost, &savings, &row.Unpriced); err != nil {
			return fmt.Errorf("read showback for %s: %w", first.Format("2006-01"), err)
		}
		if row.Cost, err = decimal.NewFromString(cost); err != nil {
			return fmt.Errorf("read showback for %s: cost %q: %w", first.Format("2006-01"), cost, err)
		}
		if row.Savings, err = decimal.NewFromString(savings); err != nil {
			return fmt.Errorf("read showback for %s: savings %q: %w", first.Format("2006-01"), savings, err)
		}
		if err := fn(row); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read showback for %s: %w", first.Format("2006-01"), err)
	}
	return nil
}
