package chwrite

import (
	"fmt"
	"strings"
	"testing"
)

func TestQueryIDNamesThePartitions(t *testing.T) {
	ids := newQueryIDs()
	first := ids.next([]part{{partition: 3}, {partition: 0}, {partition: 3}})
	second := ids.next([]part{{partition: 7}})
	if !strings.HasPrefix(first, "tokenmeter-insert:0,3:") || !strings.HasSuffix(first, "-1") {
		t.Errorf("first id = %q, want tokenmeter-insert:0,3:<nonce>-1", first)
	}
	if first[len("tokenmeter-insert:0,3:"):len(first)-2] != ids.nonce || len(ids.nonce) != 16 {
		t.Errorf("first id = %q, want nonce %q (16 hex digits)", first, ids.nonce)
	}
	if !strings.HasSuffix(second, "-2") {
		t.Errorf("second id = %q, want the counter 2", second)
	}
	if other := newQueryIDs(); other.nonce == ids.nonce {
		t.Errorf("two inserters share nonce %q", ids.nonce)
	}

	f := func(id, want string) {
		t.Helper()
		ps, ok := Partitions(id)
		if got := fmt.Sprint(ps, ok); got != want {
			t.Errorf("Partitions(%q) = %s, want %s", id, got, want)
		}
	}
	f(first, "[0 3] true")
	f(second, "[7] true")
	f("tokenmeter-insert:12:x-1", "[12] true")
	f("5f0e2a3c-8b1d-4d2e-9c7a-1b2c3d4e5f60", "[] false") // ClickHouse's own, for an id-less query
	f("tokenmeter-insert::x-1", "[] false")
	f("tokenmeter-insert:1,a:x-1", "[] false")
	f("tokenmeter-insert:-1:x-1", "[] false")
	f("tokenmeter-insert:1", "[] false")
}
