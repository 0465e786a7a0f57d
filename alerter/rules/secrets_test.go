package rules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parsePath parses testdata/name under its path, so that its secret files are found beside it.
func parsePath(t *testing.T, name string) (*File, error) {
	t.Helper()
	path := filepath.Join("testdata", name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return Parse(path, data)
}

func TestReceiverSecretsFromFilesAndEnvironment(t *testing.T) {
	t.Setenv("TOKENMETER_TEST_HOOK_URL", "https://hooks.example/ENVURL\n")
	t.Setenv("TOKENMETER_TEST_HOOK_TOKEN", "hook-env-token")
	t.Setenv("TOKENMETER_TEST_SLACK_URL", "https://hooks.slack.com/services/T/B/SLACKENVTOKEN")
	t.Setenv("TOKENMETER_TEST_PD_KEY", "fedcba9876543210fedcba9876543210")
	f, err := parsePath(t, "good-secrets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := f.Receivers
	got := []string{r[0].Webhook.URL, r[0].Webhook.BearerToken, r[1].Webhook.URL, r[1].Webhook.BearerToken,
		r[2].Slack.URL, r[2].Slack.Channel, r[3].Slack.URL, r[4].PagerDuty.RoutingKey, r[4].PagerDuty.URL, r[5].PagerDuty.RoutingKey}
	want := []string{"https://hooks.example/ENVURL", "hook-file-token", "http://127.0.0.1:9/hook", "hook-env-token",
		"https://hooks.slack.com/services/T000/B000/SLACKFILETOKEN", "#spend", "https://hooks.slack.com/services/T/B/SLACKENVTOKEN",
		"0123456789abcdef0123456789abcdef", DefaultPagerDutyURL, "fedcba9876543210fedcba9876543210"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("secrets:\n%q\nwant:\n%q", got, want)
	}
}

// TestReceiverSecretMistakes: one fixture per way to get a secret wrong. Each error names the
// field and where the secret was to come from, and none shows a secret.
func TestReceiverSecretMistakes(t *testing.T) {
	t.Setenv("TOKENMETER_TEST_EMPTY", " ")
	f := func(name, want string) {
		t.Helper()
		_, err := parsePath(t, name)
		if err == nil {
			t.Errorf("%s: accepted", name)
			return
		}
		msg := err.Error()
		if !strings.Contains(msg, want) {
			t.Errorf("%s: error %q lacks %q", name, msg, want)
		}
		if strings.Contains(msg, "T000/B000") || strings.Contains(msg, "0123456789abcdef") || strings.Contains(msg, "INLINE") {
			t.Errorf("%s: error shows a secret: %q", name, msg)
		}
	}
	f("conf.secret-two-sources.yaml", `receivers[0] "slack": slack.url, slack.url_file and slack.url_env: want one of them, got 2`)
	f("conf.secret-file-missing.yaml", `receivers[0] "slack": slack.url_file: open testdata/secrets/no-such-file: no such file or directory`)
	f("conf.secret-file-empty.yaml", `receivers[0] "pd": pagerduty.routing_key_file: testdata/secrets/empty is empty`)
	f("conf.secret-env-unset.yaml", `receivers[0] "pd": pagerduty.routing_key_env: $TOKENMETER_TEST_UNSET is not set`)
	f("conf.secret-env-empty.yaml", `receivers[0] "hook": webhook.bearer_token_env: $TOKENMETER_TEST_EMPTY is empty`)
	f("conf.secret-file-not-regular.yaml", `receivers[0] "slack": slack.url_file: testdata/secrets is not a regular file`)
	f("conf.slack-no-url.yaml", `receivers[0] "slack": slack.url: missing (set slack.url, slack.url_file or slack.url_env)`)
	// The attack: a mistyped webhook URL must not print its token in the error the alerter logs.
	f("conf.slack-bad-url-in-file.yaml", `receivers[0] "slack": slack.url_file: "hxxps://hooks.slack.com/…" is not an http(s) URL`)
	f("conf.slack-bad-url-inline.yaml", `receivers[0] "slack": slack.url: "https://…" is not an http(s) URL`)
}
