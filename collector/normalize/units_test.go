package normalize

import (
	"reflect"
	"testing"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// TestGeminiGroundingPerQuery: models after 2.x are billed per search query.
func TestGeminiGroundingPerQuery(t *testing.T) {
	f := func(model string, want event.Units) {
		t.Helper()
		body := `{"candidates":[{"groundingMetadata":{"webSearchQueries":["a","b","c"]}},{"groundingMetadata":{}}],` +
			`"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":5},"modelVersion":"` + model + `"}`
		u, err := Response(Gemini, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(u.Units, want) {
			t.Errorf("%s: Units = %v, want %v", model, u.Units, want)
		}
	}
	f("gemini-3-pro-preview", event.Units{"web_search_calls": 3})
	f("models/gemini-2.0-flash", event.Units{"web_search_calls": 1})
	f("gemini-1.5-pro", event.Units{"web_search_calls": 1})
}

// TestAudioWithinItsTokens: audio a provider counts beyond the uncached prompt (audio read
// from the prompt cache) or beyond the output less reasoning is cut, so that the event stays
// valid and no token is priced twice.
func TestAudioWithinItsTokens(t *testing.T) {
	body := `{"id":"c","model":"gpt-realtime","usage":{"prompt_tokens":1000,"completion_tokens":100,` +
		`"prompt_tokens_details":{"cached_tokens":600,"audio_tokens":700},` +
		`"completion_tokens_details":{"reasoning_tokens":30,"audio_tokens":90}}}`
	u, err := Response(OpenAIChat, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := event.Units{"audio_input_tokens": 400, "audio_output_tokens": 70}
	if !reflect.DeepEqual(u.Units, want) {
		t.Errorf("Units = %v, want %v", u.Units, want)
	}
}

func TestImageKey(t *testing.T) {
	f := func(size, quality, want string) {
		t.Helper()
		if got := imageKey(size, quality); got != want {
			t.Errorf("imageKey(%q, %q) = %q, want %q", size, quality, got, want)
		}
	}
	f("1024x1024", "high", "image_outputs:1024x1024:high")
	f("1536x1024", "", "image_outputs:1536x1024")
	f("", "", "image_outputs")
	f("1024 x 1024", "HD", "image_outputs:hd")
	f("a:b", "low", "image_outputs:low")
}

// The Chat Completions search models search before every answer: one web search per call.
func TestOpenAISearchModels(t *testing.T) {
	f := func(model string, want event.Units) {
		t.Helper()
		body := `{"id":"c","model":"` + model + `","usage":{"prompt_tokens":10,"completion_tokens":5}}`
		u, err := Response(OpenAIChat, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(u.Units, want) {
			t.Errorf("%s: Units = %v, want %v", model, u.Units, want)
		}
		s, err := streamUsage(OpenAIChat, []byte("data: "+body+"\n\ndata: [DONE]\n\n"), 7)
		if err != nil || !reflect.DeepEqual(s.Units, want) {
			t.Errorf("%s streamed: Units = %v, %v, want %v", model, s.Units, err, want)
		}
	}
	f("gpt-4o-search-preview-2025-03-11", event.Units{"web_search_calls": 1})
	f("gpt-4o-mini-search-preview", event.Units{"web_search_calls": 1})
	f("gpt-4o-2024-08-06", nil)
}
