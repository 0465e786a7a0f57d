// Package natsauth gives every tokenmeter role its own NATS identity — an nkey whose seed is a
// file only that role reads — and the publish and subscribe permissions of exactly what the
// role does: the subjects it publishes, the JetStream API calls it makes, the consumers and
// KV buckets it uses. The embedded server of `tokenmeter run` takes its users from here, and
// `tokenmeter nats init` writes the same users as a nats-server configuration for deployments.
package natsauth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/natsconn"
)

// Role is what a NATS client does in the pipeline; each has its own permissions.
type Role string

// The roles. An emitter is a service publishing its own usage (collector/emit); every emitter
// has its own identity, which may publish on its own name's subjects only
// (usage.raw.<p>.<name>, stream.EmitterRawSubject), so that the enricher can bind its events
// to the tags the operator gave that name. The proxy publishes usage.raw.<p> as the collector
// does, and also reads the budgets bucket.
const (
	Collector  Role = "collector"
	Enricher   Role = "enricher"
	Aggregator Role = "aggregator" // the aggregator and its outcome writer
	Alerter    Role = "alerter"
	Dashboard  Role = "dashboard" // reads the alerter's KV buckets
	Reconcile  Role = "reconcile" // reads USAGE_RAW
	Proxy      Role = "proxy"
	Emitter    Role = "emitter"
)

// Roles are the roles of the pipeline's own identities, one seed file each (SeedFile).
var Roles = []Role{Collector, Enricher, Aggregator, Alerter, Dashboard, Reconcile, Proxy}

// Grant is what a role may do, besides subscribing to its own inbox (natsconn.InboxPrefix).
type Grant struct {
	Publish, DenyPublish []string
}

// GrantOf is what role r may publish with partitions partitions of USAGE_ENRICHED (the
// aggregator's consumers are one per partition). name is the emitter's name for the Emitter
// role (stream.ValidEmitterName), and unused for the others.
//
// Every stage ensures the streams and their durable consumers at start-up (stream.Ensure), so
// every stage may look them up and create and update them — not delete or purge a stream,
// nor read from or acknowledge for another stage's consumer. Reading a stream or a KV bucket
// takes a consumer: a reader may create, read and delete consumers of what it reads, but not
// the pipeline's durable consumers there.
func GrantOf(r Role, name string, partitions int) Grant {
	var g Grant
	add := func(s ...string) { g.Publish = append(g.Publish, s...) }
	durables := map[string][]string{
		stream.Raw:      {stream.EnricherConsumer, stream.HistoryConsumer},
		stream.Enriched: {stream.HistoryConsumer},
		stream.Outcomes: {stream.OutcomesConsumer},
	}
	for p := range partitions {
		durables[stream.Enriched] = append(durables[stream.Enriched], stream.AggregatorConsumer(p))
	}
	ensure := func() {
		for _, s := range []string{stream.Raw, stream.Enriched, stream.Outcomes, stream.Dead, stream.History} {
			add(api("STREAM.INFO", s), api("STREAM.CREATE", s), api("STREAM.UPDATE", s))
			for _, c := range durables[s] {
				add(api("CONSUMER.INFO", s, c), api("CONSUMER.CREATE", s, c), api("CONSUMER.CREATE", s, c, ">"))
			}
		}
		// The alerter's consumer of an earlier layout, which Ensure deletes.
		add(api("CONSUMER.DELETE", stream.Enriched, stream.AlerterConsumer))
	}
	// own is a durable pull consumer the role reads and acknowledges.
	own := func(st, name string) {
		add(api("CONSUMER.CREATE", st, name), api("CONSUMER.CREATE", st, name, ">"), api("CONSUMER.INFO", st, name),
			api("CONSUMER.MSG.NEXT", st, name), "$JS.ACK."+st+"."+name+".>")
	}
	// read is reading st through consumers of the reader's own; the pipeline's durables
	// there stay out of reach.
	read := func(st string) {
		add(api("STREAM.INFO", st), api("CONSUMER.CREATE", st), api("CONSUMER.CREATE", st, ">"),
			api("CONSUMER.INFO", st, "*"), api("CONSUMER.DELETE", st, "*"), api("CONSUMER.MSG.NEXT", st, "*"),
			"$JS.FC."+st+".>")
		for _, c := range durables[st] {
			for _, op := range []string{"CREATE", "INFO", "DELETE", "MSG.NEXT"} {
				g.DenyPublish = append(g.DenyPublish, api("CONSUMER."+op, st, c))
			}
			g.DenyPublish = append(g.DenyPublish, api("CONSUMER.CREATE", st, c, ">"))
		}
	}
	kvRead := func(bucket string) {
		st := "KV_" + bucket
		read(st)
		add(api("DIRECT.GET", st), api("DIRECT.GET", st, ">"), api("STREAM.MSG.GET", st))
	}
	kvWrite := func(bucket string) {
		kvRead(bucket)
		add(api("STREAM.CREATE", "KV_"+bucket), api("STREAM.UPDATE", "KV_"+bucket), "$KV."+bucket+".>")
	}
	if r != Emitter {
		add("$JS.API.INFO") // account limits and usage, which the KV client asks for
	}
	switch r {
	case Collector:
		ensure()
		add(stream.RawPrefix+"*", stream.OutcomesSubject)
		kvRead(kv.Budgets) // the hard caps it enforces; it creates the bucket when missing
		add(api("STREAM.CREATE", "KV_"+kv.Budgets))
	case Enricher:
		ensure()
		own(stream.Raw, stream.EnricherConsumer)
		add(stream.EnrichedPrefix+"*", stream.DeadSubject("enricher"))
	case Aggregator:
		ensure()
		for p := range partitions {
			own(stream.Enriched, stream.AggregatorConsumer(p))
		}
		own(stream.Outcomes, stream.OutcomesConsumer)
		add(stream.DeadSubject("aggregator"), stream.DeadSubject("outcomes"))
		kvWrite(kv.Leases)
	case Alerter:
		ensure()
		// Its live consumer, deleted whenever it stops or falls behind; consumers of its own
		// on the history to catch up, and the newest copy there; and its consumer there of
		// an earlier layout, which it deletes.
		own(stream.Enriched, stream.AlerterLiveConsumer)
		add(api("CONSUMER.DELETE", stream.Enriched, stream.AlerterLiveConsumer))
		read(stream.History)
		add(api("STREAM.MSG.GET", stream.History), api("CONSUMER.DELETE", stream.History, stream.AlerterConsumer))
		kvWrite(kv.Budgets)
		kvWrite(kv.Alerts)
		kvWrite(kv.Silences) // silences made at run time, through its API
	case Dashboard:
		kvRead(kv.Budgets)
		kvRead(kv.Alerts)
	case Reconcile:
		read(stream.History)
	case Proxy:
		add(stream.RawPrefix + "*")
		kvRead(kv.Budgets) // it refuses calls over a hard cap before they are paid for
	case Emitter:
		// Its own name's subject on every partition, and nothing else: not the collector's
		// usage.raw.<p>, whose events no binding covers, nor another emitter's name. A name
		// that is not one subject token (a wildcard, a dot) would widen the grant.
		if stream.ValidEmitterName(name) {
			add(stream.RawPrefix + "*." + name)
		}
	}
	g.Publish = unique(g.Publish)
	return g
}

// unique drops the later copies of repeated subjects.
func unique(subjects []string) []string {
	seen := map[string]bool{}
	out := subjects[:0]
	for _, s := range subjects {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// api is the JetStream API subject of op on the tokens that follow.
func api(op string, tokens ...string) string {
	return strings.Join(append([]string{"$JS.API." + op}, tokens...), ".")
}

// Permissions are the server permissions of identity id.
func Permissions(id Identity, partitions int) *server.Permissions {
	g := GrantOf(id.Role, id.Name, partitions)
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: g.Publish, Deny: g.DenyPublish},
		Subscribe: &server.SubjectPermission{Allow: []string{natsconn.InboxPrefix(id.Key) + ".>"}},
	}
}

// SeedFile is the seed file of role r in dir.
func SeedFile(dir string, r Role) string { return filepath.Join(dir, string(r)+".nk") }

// EmitterFile is the seed file of the emitter named name in dir.
func EmitterFile(dir, name string) string { return filepath.Join(dir, "emitters", name+".nk") }

// Ensure creates dir (mode 0700) and the seed file (mode 0600) of every role in Roles that
// has none; existing seeds are kept, so identities survive restarts.
func Ensure(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "emitters"), 0o700); err != nil {
		return fmt.Errorf("create the NATS credentials directory: %w", err)
	}
	for _, r := range Roles {
		if err := writeSeed(SeedFile(dir, r)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return nil
}

// AddEmitter creates the seed file of a new emitter named name in dir and returns its path.
// An emitter of that name that exists is an error: its seed is already in use.
func AddEmitter(dir, name string) (string, error) {
	if !stream.ValidEmitterName(name) {
		return "", fmt.Errorf("emitter name %q: want 1 to 64 of a-z, 0-9, _ and -, starting with a letter or digit", name)
	}
	if err := os.MkdirAll(filepath.Join(dir, "emitters"), 0o700); err != nil {
		return "", fmt.Errorf("create the NATS credentials directory: %w", err)
	}
	f := EmitterFile(dir, name)
	if err := writeSeed(f); err != nil {
		return "", err
	}
	return f, nil
}

// writeSeed writes a new user seed to file, which must not exist, readable by its owner only.
func writeSeed(file string) error {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return fmt.Errorf("create an nkey for %s: %w", file, err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return fmt.Errorf("create an nkey for %s: %w", file, err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write NATS nkey seed: %w", err)
	}
	_, err = f.Write(append(seed, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(file)
		return fmt.Errorf("write NATS nkey seed %s: %w", file, err)
	}
	return nil
}

// Identity is one client the server admits: its role, its name (the role, or an emitter's
// name) and its public key.
type Identity struct {
	Role      Role
	Name, Key string
}

// Identities reads the public keys of every seed in dir: the roles' and every emitter's,
// emitters sorted by name. A role without a seed file is an error (run Ensure first).
func Identities(dir string) ([]Identity, error) {
	var ids []Identity
	for _, r := range Roles {
		pub, err := natsconn.PublicKey(SeedFile(dir, r))
		if err != nil {
			return nil, fmt.Errorf("identity of %s: %w", r, err)
		}
		ids = append(ids, Identity{Role: r, Name: string(r), Key: pub})
	}
	files, err := filepath.Glob(filepath.Join(dir, "emitters", "*.nk"))
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".nk")
		if !stream.ValidEmitterName(name) {
			// Not written by AddEmitter: its name would not be one subject token.
			return nil, fmt.Errorf("identity of emitter %s: the name %q is not 1 to 64 of a-z, 0-9, _ and -, starting with a letter or digit", f, name)
		}
		pub, err := natsconn.PublicKey(f)
		if err != nil {
			return nil, fmt.Errorf("identity of emitter: %w", err)
		}
		ids = append(ids, Identity{Role: Emitter, Name: name, Key: pub})
	}
	return ids, nil
}

// Users are the server's users for ids, each with its role's permissions.
func Users(ids []Identity, partitions int) []*server.NkeyUser {
	users := make([]*server.NkeyUser, len(ids))
	for i, id := range ids {
		users[i] = &server.NkeyUser{Nkey: id.Key, Permissions: Permissions(id, partitions)}
	}
	return users
}
