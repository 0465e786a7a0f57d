package stream

import (
	"fmt"
	"strconv"
	"strings"
)

// An emitter — a service publishing its own usage with its own NATS identity — publishes on
// usage.raw.<partition>.<emitter name>, one token more than the collector's and the proxy's
// usage.raw.<partition>. JetStream does not record who published a message, so the subject
// is the only fact about a message's origin the enricher can trust: the server lets each
// emitter identity publish on its own name only (deploy/natsauth), and the enricher binds the
// events of usage.raw.<p>.<name> to the tags the operator gave that name.

// RawSubjects are the subjects of USAGE_RAW and of the enricher's consumer on it: both the
// collector's usage.raw.<p> and the emitters' usage.raw.<p>.<name>.
const RawSubjects = RawPrefix + ">"

// MaxEmitterName is the longest emitter name, in bytes.
const MaxEmitterName = 64

// ValidEmitterName reports whether name can name an emitter: 1 to 64 of a-z, 0-9, '_' and
// '-', starting with a letter or digit. It is one subject token and one file name.
func ValidEmitterName(name string) bool {
	if len(name) == 0 || len(name) > MaxEmitterName || name[0] == '_' || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// EmitterRawSubject is the subject on which the emitter named name publishes partition p of
// USAGE_RAW; "" names no emitter and gives RawSubject(p). name must be valid
// (ValidEmitterName).
func EmitterRawSubject(p int, name string) string {
	if name == "" {
		return RawSubject(p)
	}
	return RawPrefix + strconv.Itoa(p) + "." + name
}

// maxPartition bounds the partition a raw subject may name.
const maxPartition = 0xffff

// ParseRawSubject reads a subject of USAGE_RAW: its partition, and the name of the emitter
// that published it ("" for usage.raw.<p>, the collector's and the proxy's).
func ParseRawSubject(subject string) (p int, emitter string, err error) {
	rest, ok := strings.CutPrefix(subject, RawPrefix)
	part, name, named := strings.Cut(rest, ".")
	if ok {
		p, err = strconv.Atoi(part)
	}
	if !ok || err != nil || p < 0 || p > maxPartition || part != strconv.Itoa(p) || (named && !ValidEmitterName(name)) {
		return 0, "", fmt.Errorf("subject %q is not %s<partition> nor %s<partition>.<emitter>", clipSubject(subject), RawPrefix, RawPrefix)
	}
	return p, name, nil
}

// clipSubject keeps an error message short when a subject is long.
func clipSubject(s string) string {
	if len(s) <= 128 {
		return s
	}
	return strings.ToValidUTF8(s[:128], "") + "…"
}
