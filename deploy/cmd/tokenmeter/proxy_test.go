package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tokenmeter/tokenmeter/collector/proxy"
)

func TestParseProxyFlags(t *testing.T) {
	f, err := parseProxyFlags([]string{"-addr", "127.0.0.1:0", "-anthropic", "",
		"-route", "/azure=openai,https://acme.openai.azure.com/openai/deployments/gpt-4o,azure",
		"-route", "/claude=anthropic,http://127.0.0.1:9999"})
	if err != nil {
		t.Fatal(err)
	}
	want := []proxy.Route{
		{Prefix: "/openai", Upstream: "https://api.openai.com", API: proxy.APIOpenAI},
		{Prefix: "/azure", Upstream: "https://acme.openai.azure.com/openai/deployments/gpt-4o", API: proxy.APIOpenAI, Provider: "azure"},
		{Prefix: "/claude", Upstream: "http://127.0.0.1:9999", API: proxy.APIAnthropic},
	}
	if !reflect.DeepEqual(f.cfg.Routes, want) || f.cfg.Addr != "127.0.0.1:0" {
		t.Errorf("routes %+v at %s, want %+v", f.cfg.Routes, f.cfg.Addr, want)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-route", "/x"}, `route "/x" is not PREFIX=API,UPSTREAM[,PROVIDER]`},
		{[]string{"-openai", "", "-anthropic", ""}, "no routes"},
		{[]string{"extra"}, `unexpected arguments ["extra"]`},
	} {
		if _, err := parseProxyFlags(c.args); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseProxyFlags(%q) error = %v, want %q", c.args, err, c.want)
		}
	}
	// Invalid routes are refused with every problem named, before anything starts.
	if err := runProxy(t.Context(), []string{"-route", "/bad=cohere,ftp://x"}); err == nil ||
		!strings.Contains(err.Error(), `api "cohere" is not one of openai, anthropic`) || !strings.Contains(err.Error(), `upstream "ftp://x"`) {
		t.Errorf("runProxy with a bad route: %v", err)
	}
}
