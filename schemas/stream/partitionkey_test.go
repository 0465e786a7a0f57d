package stream

import (
	"fmt"
	"testing"
)

func TestPartitionKey(t *testing.T) {
	for _, tc := range []struct{ provider, responseID, id, want string }{
		{"openai", "", "evt_1", "evt_1"},
		{"", "", "", ""},
		{"openai", "chatcmpl-abc", "evt_1", "response\x00openai\x00chatcmpl-abc"},
		{"OpenAI", "chatcmpl-abc", "proxy-openai-chatcmpl-abc", "response\x00openai\x00chatcmpl-abc"},
		{"anthropic", "msg_01", "", "response\x00anthropic\x00msg_01"},
		{"", "msg_01", "evt_2", "response\x00\x00msg_01"},
	} {
		if got := PartitionKey(tc.provider, tc.responseID, tc.id); got != tc.want {
			t.Errorf("PartitionKey(%q, %q, %q) = %q, want %q", tc.provider, tc.responseID, tc.id, got, tc.want)
		}
	}
}

// TestPartitionOfPinned pins where a few events go: changing it would send the copies of an
// event that straddle an upgrade to different partitions.
func TestPartitionOfPinned(t *testing.T) {
	for _, tc := range []struct {
		provider, responseID, id string
		want                     int
	}{
		{"openai", "", "evt_1", 1},
		{"openai", "", "chatcmpl-abc", 2},
		{"openai", "chatcmpl-abc", "evt_1", 2},
		{"anthropic", "msg_01XFDUDYJgAACzvnptvVoYEL", "evt_1", 0},
		{"anthropic", "msg_01XFDUDYJgAACzvnptvVoYEL", "evt_2", 0},
		{"openai", "chatcmpl-B9MBs8", "x", 3},
	} {
		if got := PartitionOf(tc.provider, tc.responseID, tc.id, DefaultPartitions); got != tc.want {
			t.Errorf("PartitionOf(%q, %q, %q, 4) = %d, want %d", tc.provider, tc.responseID, tc.id, got, tc.want)
		}
	}
}

// TestPartitionOfMatchesKey checks that PartitionOf is Partition of PartitionKey, that two
// reports of one call meet on one partition whatever their ids and the case of the provider,
// and that events without a response id keep the partition of their id.
func TestPartitionOfMatchesKey(t *testing.T) {
	providers := []string{"openai", "Anthropic", "", "ÉCOLE", "aws.bedrock"}
	for n := 1; n <= 16; n++ {
		for i := range 200 {
			provider := providers[i%len(providers)]
			rid := ""
			if i%3 != 0 {
				rid = fmt.Sprintf("resp-%d", i)
			}
			id := fmt.Sprintf("evt_%d", i)
			got := PartitionOf(provider, rid, id, n)
			if want := Partition(PartitionKey(provider, rid, id), n); got != want {
				t.Fatalf("PartitionOf(%q, %q, %q, %d) = %d, Partition(PartitionKey(…)) = %d", provider, rid, id, n, got, want)
			}
			if got < 0 || got >= n {
				t.Fatalf("PartitionOf(…, %d) = %d, outside [0, %d)", n, got, n)
			}
			if rid == "" {
				if want := Partition(id, n); got != want {
					t.Errorf("PartitionOf without response id = %d, Partition(id) = %d", got, want)
				}
				continue
			}
			// Another emitter's report of the same call: another id, the provider in capitals.
			if other := PartitionOf(toUpperASCII(provider), rid, "proxy-"+id, n); other != got {
				t.Errorf("reports of response %q of %q: partitions %d and %d", rid, provider, got, other)
			}
		}
	}
}

func toUpperASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// TestPartitionOfSpread checks that sequential response ids spread evenly.
func TestPartitionOfSpread(t *testing.T) {
	const events, n = 10_000, DefaultPartitions
	counts := make([]int, n)
	for i := range events {
		counts[PartitionOf("openai", fmt.Sprintf("chatcmpl-%d", i), "evt", n)]++
	}
	for p, c := range counts {
		if lo, hi := events/n*95/100, events/n*105/100; c < lo || c > hi {
			t.Errorf("partition %d holds %d of %d events, want within [%d, %d]; all: %v", p, c, events, lo, hi, counts)
		}
	}
}

func TestPartitionOfAllocs(t *testing.T) {
	if a := testing.AllocsPerRun(100, func() { PartitionOf("openai", "chatcmpl-abc", "evt_1", 4) }); a != 0 {
		t.Errorf("PartitionOf allocates %v times per call, want 0", a)
	}
}

// FuzzPartitionOf checks, for any fields, that PartitionOf is Partition of PartitionKey, lies
// in range, ignores the provider's case and, without a response id, follows the event id.
func FuzzPartitionOf(f *testing.F) {
	f.Add("openai", "chatcmpl-abc", "evt_1", 4)
	f.Add("Anthropic", "", "evt_2", 1)
	f.Add("", "msg\x00x", "", 65536)
	f.Fuzz(func(t *testing.T, provider, rid, id string, n int) {
		if n < 1 || n > 1<<16 {
			return
		}
		got := PartitionOf(provider, rid, id, n)
		if want := Partition(PartitionKey(provider, rid, id), n); got != want {
			t.Fatalf("PartitionOf(%q, %q, %q, %d) = %d, Partition(PartitionKey(…)) = %d", provider, rid, id, n, got, want)
		}
		if got < 0 || got >= n {
			t.Fatalf("PartitionOf(…, %d) = %d, out of range", n, got)
		}
		if rid == "" && got != Partition(id, n) {
			t.Fatalf("PartitionOf without a response id = %d, Partition(id) = %d", got, Partition(id, n))
		}
		if rid != "" && PartitionOf(toUpperASCII(provider), rid, id+"-other", n) != got {
			t.Fatalf("the provider's case or the event id moved response %q", rid)
		}
	})
}

func BenchmarkPartitionOf(b *testing.B) {
	b.Run("id", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			PartitionOf("openai", "", "evt_00000000000000012345", DefaultPartitions)
		}
	})
	b.Run("response", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			PartitionOf("openai", "chatcmpl-B9MBs8CjcvOU2jLn4n570S5q", "evt_00000000000000012345", DefaultPartitions)
		}
	})
}
