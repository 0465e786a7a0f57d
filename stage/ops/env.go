package ops

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// EnvName is the environment variable of a command-line flag: TOKENMETER_ and the flag's
// name in upper case with dashes as underscores ("batch-max-wait" → TOKENMETER_BATCH_MAX_WAIT).
func EnvName(flagName string) string {
	return "TOKENMETER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// StageEnv renames the environment variables of the stage commands' flags whose names came
// before EnvName's rule.
var StageEnv = map[string]string{
	"nats":        "TOKENMETER_NATS_URL",
	"ops":         "TOKENMETER_OPS_ADDR",
	"clickhouse":  "TOKENMETER_CLICKHOUSE_DSN",
	"database":    "TOKENMETER_CLICKHOUSE_DATABASE",
	"own":         "TOKENMETER_OWN_PARTITIONS",
	"rules":       "TOKENMETER_RULES_FILE",
	"pricing":     "TOKENMETER_PRICING_DIR",
	"attribution": "TOKENMETER_ATTRIBUTION_FILE",
	"keys":        "TOKENMETER_KEYS_FILE",
	"tag-policy":  "TOKENMETER_TAG_POLICY_FILE",
	// Named like the other files' variables.
	"emitter-bindings": "TOKENMETER_EMITTER_BINDINGS_FILE",
}

// ApplyEnv sets every flag of fs that the command line did not set from its environment
// variable, when that is set and not empty: EnvName(flag), or the name renamed gives it.
// Call it after fs.Parse. Each value is parsed as the flag parses it; ApplyEnv returns every
// value it could not use, naming the variable, so that a service refuses to start rather than
// run on a default it was not meant to.
func ApplyEnv(fs *flag.FlagSet, renamed map[string]string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		key := EnvName(f.Name)
		if r, ok := renamed[f.Name]; ok {
			key = r
		}
		v := os.Getenv(key)
		if v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q (flag -%s): %v", key, v, f.Name, err))
		}
	})
	return errors.Join(errs...)
}

// FlagOf is the flag a stage command sets from the environment variable key under ApplyEnv
// with StageEnv: the inverse of its naming, for checks that a deployment's variables are ones
// the commands read. It returns "" for a name outside the TOKENMETER_ prefix.
func FlagOf(key string) string {
	for flagName, k := range StageEnv {
		if k == key {
			return flagName
		}
	}
	rest, ok := strings.CutPrefix(key, "TOKENMETER_")
	if !ok {
		return ""
	}
	return strings.ToLower(strings.ReplaceAll(rest, "_", "-"))
}
