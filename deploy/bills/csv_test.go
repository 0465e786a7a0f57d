package bills

import (
	"strings"
	"testing"
)

func TestParseCSV(t *testing.T) {
	rep, err := ParseCSV(strings.NewReader("\ufeffline_item,day,provider,model,token_class,tokens,cost_usd,project\n"+
		"USE1-Claude3Haiku-input-tokens,2026-11-10,Bedrock,anthropic.claude-3-haiku,input_uncached,4100,0.001025,acct-1\n"+
		"Gemini output,2026-11-11,vertex,gemini-2.5-pro,output,,1e-3,\n"), "billing")
	if err != nil {
		t.Fatal(err)
	}
	want := `2026-11-10|billing|bedrock|anthropic.claude-3-haiku|acct-1|||input_uncached|USE1-Claude3Haiku-input-tokens|4100|0.001025000000
2026-11-11|billing|vertex|gemini-2.5-pro||||output|Gemini output|0|0.001000000000
`
	if got := rowLines(rep.Rows); got != want {
		t.Errorf("rows:\n%s\nwant:\n%s", got, want)
	}
	if got, want := periodLines(rep.Periods), "billing 2026-11-10 complete=true\nbilling 2026-11-11 complete=true\n"; got != want {
		t.Errorf("periods:\n%s\nwant:\n%s", got, want)
	}

	f := func(in, want string) {
		t.Helper()
		_, err := ParseCSV(strings.NewReader(in), "csv")
		if err == nil || err.Error() != want {
			t.Errorf("ParseCSV(%q) error = %v, want %s", in, err, want)
		}
	}
	f("", "csv: empty file, want a header line")
	f("day,provider,model,token_class,tokens,cost,usd\n", "csv: column \"cost\" unknown (want day, provider, model, token_class, tokens, cost_usd, optionally project, api_key, service_tier, line_item)\n"+
		"csv: column \"usd\" unknown (want day, provider, model, token_class, tokens, cost_usd, optionally project, api_key, service_tier, line_item)\n"+
		"csv: no column \"cost_usd\"")
	head := "day,provider,model,token_class,tokens,cost_usd\n"
	f(head+"2026-11-31,openai,m,output,1,0\n", `csv line 2: day "2026-11-31": want YYYY-MM-DD`)
	f(head+"2026-11-30,,m,output,1,0\n", "csv line 2: provider is empty")
	f(head+"2026-11-30,openai,m,input,1,0\n", `csv line 2: token_class "input": want one of input_uncached, input_cached, cache_write_5m, cache_write_1h, output or empty`)
	f(head+"2026-11-30,openai,m,output,-1,0\n", `csv line 2: tokens "-1": want a whole number`)
	f(head+"2026-11-30,openai,m,output,1,$3\n", `csv line 2: cost_usd: amount "$3": not a decimal number`)
}

// FuzzParseCSV: ParseCSV never panics, and what it accepts has one period per day of its rows.
func FuzzParseCSV(f *testing.F) {
	f.Add("day,provider,model,token_class,tokens,cost_usd\n2026-11-10,openai,gpt-4o,output,5,0.25\n")
	f.Add("day,provider,model,token_class,tokens,cost_usd,project,api_key,service_tier,line_item\n2026-11-10,x,,,,,,,,\n")
	f.Fuzz(func(t *testing.T, in string) {
		rep, err := ParseCSV(strings.NewReader(in), "csv")
		if err != nil {
			return
		}
		days := map[string]bool{}
		for _, p := range rep.Periods {
			days[p.Day.Format("2006-01-02")] = true
		}
		for _, r := range rep.Rows {
			if !days[r.Day.Format("2006-01-02")] {
				t.Fatalf("row of %s without its period", r.Day)
			}
		}
	})
}

// FuzzDecodeOpenAIPage and FuzzDecodeAnthropicPage: the decoders never panic, and every row
// they accept lies on a UTC midnight.
func FuzzDecodeOpenAIPage(f *testing.F) {
	f.Add([]byte(`{"object":"page","data":[{"object":"bucket","start_time":1795910400,"end_time":1795996800,"results":[{"input_tokens":10,"input_cached_tokens":2,"output_tokens":1,"model":"m"}]}],"has_more":false}`), false)
	f.Add([]byte(`{"data":[{"start_time":1795910400,"end_time":1795996800,"result":[{"amount":{"value":1e-3,"currency":"usd"},"line_item":"m, input"}]}]}`), true)
	f.Fuzz(func(t *testing.T, data []byte, costs bool) {
		source := SourceOpenAICompletions
		if costs {
			source = SourceOpenAICosts
		}
		rows, _, err := decodeOpenAIPage(data, source)
		if err == nil {
			checkDays(t, rows)
		}
	})
}

func FuzzDecodeAnthropicPage(f *testing.F) {
	f.Add([]byte(`{"data":[{"starting_at":"2026-11-29T00:00:00Z","ending_at":"2026-11-30T00:00:00Z","results":[{"uncached_input_tokens":1,"cache_creation":{"ephemeral_5m_input_tokens":2},"output_tokens":3}]}],"has_more":false}`), false)
	f.Add([]byte(`{"data":[{"starting_at":"2026-11-29T00:00:00Z","ending_at":"2026-11-30T00:00:00Z","results":[{"amount":"123.45","currency":"USD","token_type":"output_tokens"}]}]}`), true)
	f.Fuzz(func(t *testing.T, data []byte, costs bool) {
		source := SourceAnthropicMessages
		if costs {
			source = SourceAnthropicCosts
		}
		rows, _, err := decodeAnthropicPage(data, source)
		if err == nil {
			checkDays(t, rows)
		}
	})
}

func checkDays(t *testing.T, rows []Row) {
	t.Helper()
	for _, r := range rows {
		if !r.Day.Equal(day(r.Day)) {
			t.Fatalf("row day %s is not a UTC midnight", r.Day)
		}
	}
}
