// Package compose holds deploy/compose: the docker-compose file, the Dockerfile building
// every tokenmeter binary, and Grafana's provisioning. This test renders the compose file the
// way `docker compose config` does (compose-go, the library Docker Compose itself uses) and
// checks that everything it names exists in the repository.
package compose

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"

	"github.com/tokenmeter/tokenmeter/deploy/internal/commands"
	"github.com/tokenmeter/tokenmeter/stage/natsconn"
	"github.com/tokenmeter/tokenmeter/stage/ops"
)

const repoRoot = "../.."

func loadProject(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"docker-compose.yml"}, cli.WithWorkingDirectory("."))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("render docker-compose.yml: %v", err)
	}
	return p
}

// dockerfileCommands returns the Go commands the Dockerfile builds, by binary name, with
// their source directories.
func dockerfileCommands(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	cmds := map[string]string{}
	for _, m := range regexp.MustCompile(`\./([a-z]+/cmd/([a-z]+))`).FindAllStringSubmatch(string(data), -1) {
		cmds[m[2]] = m[1]
	}
	return cmds
}

// mainSource returns the Go source of the main package in dir (relative to the repository).
func mainSource(t *testing.T, dir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(repoRoot, dir, "*.go"))
	var src strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(data)
	}
	if !strings.Contains(src.String(), "package main") {
		t.Errorf("%s holds no main package", dir)
	}
	return src.String()
}

func TestComposeRenders(t *testing.T) {
	p := loadProject(t)
	var names []string
	for name := range p.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	if got, want := strings.Join(names, " "), "aggregator alerter clickhouse clickhouse-users collector enricher grafana nats nats-auth"; got != want {
		t.Errorf("services = %s, want %s", got, want)
	}

	cmds := dockerfileCommands(t)
	if got := len(cmds); got != 5 {
		t.Errorf("the Dockerfile builds %d commands (%v), want 5: the four services and tokenmeter", got, cmds)
	}
	for _, dir := range cmds {
		mainSource(t, dir)
	}

	for name, s := range p.Services {
		if s.Build != nil {
			if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
				t.Errorf("%s: build file: %v", name, err)
			}
			if _, err := os.Stat(filepath.Join(s.Build.Context, "go.work")); err != nil {
				t.Errorf("%s: build context %s is not the repository root: %v", name, s.Build.Context, err)
			}
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("%s: bind mount source: %v", name, err)
				}
			}
		}
		for dep := range s.DependsOn {
			if _, ok := p.Services[dep]; !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			}
		}
		if s.Build == nil {
			if s.Restart == "no" {
				continue // a one-shot: services wait for it to complete, not to be healthy
			}
			if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
				t.Errorf("%s: infrastructure services need a health check, for depends_on to wait on", name)
			}
			continue
		}
		// A tokenmeter service: its command is a binary the Dockerfile builds, and every flag
		// and environment variable it is given is one that binary reads.
		if len(s.Command) == 0 {
			t.Errorf("%s: no command", name)
			continue
		}
		dir, ok := cmds[s.Command[0]]
		if !ok {
			t.Errorf("%s runs %q, which the Dockerfile does not build", name, s.Command[0])
			continue
		}
		src := mainSource(t, dir)
		for _, arg := range s.Command[1:] {
			if flag, ok := strings.CutPrefix(arg, "-"); ok && !defines(dir, src, flag) {
				t.Errorf("%s: flag -%s is not defined in %s", name, flag, dir)
			}
		}
		for key := range s.Environment {
			if !reads(dir, src, key) {
				t.Errorf("%s: environment variable %s is not read by %s", name, key, dir)
			}
		}
	}
}

func TestGrafanaProvisioning(t *testing.T) {
	ds := struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name, Type, UID string
			JSONData        struct {
				Host            string `json:"host"`
				Port            int    `json:"port"`
				Protocol        string `json:"protocol"`
				DefaultDatabase string `json:"defaultDatabase"`
			} `json:"jsonData"`
		} `json:"datasources"`
	}{}
	data, err := os.ReadFile("grafana/provisioning/datasources/clickhouse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &ds); err != nil {
		t.Fatalf("parse the data source: %v", err)
	}
	if len(ds.Datasources) != 1 {
		t.Fatalf("%d data sources, want 1", len(ds.Datasources))
	}
	d := ds.Datasources[0]
	p := loadProject(t)
	if d.Type != "grafana-clickhouse-datasource" || d.JSONData.Host != "clickhouse" || d.JSONData.Port != 9000 ||
		d.JSONData.Protocol != "native" || d.JSONData.DefaultDatabase != "tokenmeter" {
		t.Errorf("data source = %+v, want the native protocol on clickhouse:9000, database tokenmeter", d)
	}
	if _, ok := p.Services[d.JSONData.Host]; !ok {
		t.Errorf("the data source points at %s, which is not a service", d.JSONData.Host)
	}
	if plugins := p.Services["grafana"].Environment["GF_INSTALL_PLUGINS"]; plugins == nil || *plugins != d.Type {
		t.Errorf("grafana installs %v, want the data source's plugin %s", plugins, d.Type)
	}

	var prov struct {
		Providers []struct {
			Options struct {
				Path string `json:"path"`
			} `json:"options"`
		} `json:"providers"`
	}
	data, err = os.ReadFile("grafana/provisioning/dashboards/tokenmeter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &prov); err != nil || len(prov.Providers) != 1 {
		t.Fatalf("parse the dashboard provider: %v (%d providers)", err, len(prov.Providers))
	}
	mounted := false
	for _, v := range p.Services["grafana"].Volumes {
		if v.Target != prov.Providers[0].Options.Path {
			continue
		}
		mounted = true
		dashboards, _ := filepath.Glob(filepath.Join(v.Source, "*.json"))
		if len(dashboards) == 0 {
			t.Errorf("no dashboard JSON in %s, which Grafana loads", v.Source)
		}
		for _, f := range dashboards {
			if data, err := os.ReadFile(f); err != nil || !strings.Contains(string(data), `"`+d.Type+`"`) {
				t.Errorf("dashboard %s does not use the %s data source (%v)", f, d.Type, err)
			}
		}
	}
	if !mounted {
		t.Errorf("the dashboard provider reads %s, which nothing is mounted at", prov.Providers[0].Options.Path)
	}
}

// reads says whether the main package whose source is src reads the environment variable
// key: as the variable of one of its flags (ops.ApplyEnv), or by name.
func reads(dir, src, key string) bool {
	if flag := ops.FlagOf(key); flag != "" && defines(dir, src, flag) {
		return true
	}
	return strings.Contains(src, `"`+key+`"`)
}

// defines says whether the command built from dir, whose main package's source is src, defines
// the flag name: a stage command's flag set, else its source literally or through natsconn,
// whose flags every command connecting to NATS registers.
func defines(dir, src, name string) bool {
	if fs := commands.FlagSet(dir); fs != nil {
		return fs.Lookup(name) != nil
	}
	return strings.Contains(src, `"`+name+`"`) || strings.Contains(src, "natsconn.Config") && natsconn.IsFlag(name)
}

// TestNATSAuth checks that NATS is reachable from this machine's loopback only, loads the
// users nats-auth writes, and that every service connecting to it has a key of its own.
func TestNATSAuth(t *testing.T) {
	p := loadProject(t)
	n := p.Services["nats"]
	for _, port := range n.Ports {
		if port.HostIP != "127.0.0.1" {
			t.Errorf("nats publishes port %d on %q, want 127.0.0.1 only", port.Target, port.HostIP)
		}
	}
	if cmd := strings.Join(n.Command, " "); !strings.Contains(cmd, "--config /nats-auth/auth.conf") {
		t.Errorf("nats runs %q, without the users of nats-auth", cmd)
	}
	if cmd := strings.Join(p.Services["nats-auth"].Command, " "); !strings.HasPrefix(cmd, "tokenmeter nats init -dir /nats-auth") {
		t.Errorf("nats-auth runs %q", cmd)
	}
	keys := map[string]string{}
	for name, s := range p.Services {
		if s.Build == nil || name == "nats-auth" {
			continue
		}
		cmd := strings.Join(s.Command, " ")
		if _, key, ok := strings.Cut(cmd, "-nats-nkey "); ok {
			keys[name], _, _ = strings.Cut(key, " ")
		} else if v := s.Environment["TOKENMETER_NATS_NKEY"]; v != nil {
			keys[name] = *v
		}
		if want := "/nats-auth/" + name + ".nk"; keys[name] != want {
			t.Errorf("%s connects to NATS with key %q, want its own, %s", name, keys[name], want)
		}
	}
}

// TestClickHouseUsers checks that no ClickHouse password is in the repository's compose files,
// that the aggregator and the alerter write as tokenmeter_writer and Grafana reads as
// tokenmeter_reader, each with the password file clickhouse-users generates into a volume
// mounted only where it is used, and that ClickHouse takes its users from clickhouse-users.
func TestClickHouseUsers(t *testing.T) {
	p := loadProject(t)
	for _, f := range []string{"docker-compose.yml", "grafana/provisioning/datasources/clickhouse.yaml"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, re := range []string{`CLICKHOUSE_PASSWORD\b`, `clickhouse://[^@\s"]*:[^@\s"]*@`, `(?m)^\s*password:\s*[^$\s]`} {
			if m := regexp.MustCompile(re).FindString(string(data)); m != "" {
				t.Errorf("%s holds a ClickHouse password: %q", f, m)
			}
		}
	}

	// volumeAt is the named volume a service mounts at the directory holding file, or "".
	volumeAt := func(service, file string) string {
		for _, v := range p.Services[service].Volumes {
			if v.Type == types.VolumeTypeVolume && filepath.Dir(file) == v.Target {
				return v.Source
			}
		}
		return ""
	}
	volumes := func(service string) []string {
		var names []string
		for _, v := range p.Services[service].Volumes {
			if v.Type == types.VolumeTypeVolume && strings.HasPrefix(v.Source, "clickhouse-") {
				names = append(names, v.Source)
			}
		}
		sort.Strings(names)
		return names
	}

	gen := p.Services["clickhouse-users"]
	if len(gen.Entrypoint) != 6 || gen.Entrypoint[0] != "bash" || gen.Entrypoint[2] != "-generate" {
		t.Fatalf("clickhouse-users runs %q, want bash clickhouse-users.sh -generate WRITER READER USERS", gen.Entrypoint)
	}
	script := ""
	for _, v := range gen.Volumes {
		if v.Target == gen.Entrypoint[1] {
			script = v.Source
		}
	}
	if want, _ := filepath.Abs(filepath.Join(repoRoot, "deploy", "kubernetes", "clickhouse-users.sh")); script != want {
		t.Errorf("clickhouse-users runs %s from %q, want deploy/kubernetes/clickhouse-users.sh, the script Kubernetes runs", gen.Entrypoint[1], script)
	}
	writerFile, readerFile, usersFile := gen.Entrypoint[3], gen.Entrypoint[4], gen.Entrypoint[5]
	writerVol, readerVol := volumeAt("clickhouse-users", writerFile), volumeAt("clickhouse-users", readerFile)
	if writerVol != "clickhouse-writer" || readerVol != "clickhouse-reader" {
		t.Errorf("clickhouse-users writes the passwords into volumes %q and %q, want clickhouse-writer and clickhouse-reader", writerVol, readerVol)
	}

	ch := p.Services["clickhouse"]
	usersVol := volumeAt("clickhouse-users", usersFile)
	var usersD string
	for _, v := range ch.Volumes {
		if v.Source == usersVol {
			usersD = v.Target
		}
	}
	if usersVol == "" || usersD != "/etc/clickhouse-server/users.d" {
		t.Errorf("ClickHouse mounts the users clickhouse-users writes (volume %q) at %q, want /etc/clickhouse-server/users.d", usersVol, usersD)
	}
	if v := ch.Environment["CLICKHOUSE_SKIP_USER_SETUP"]; v == nil || *v != "1" {
		t.Errorf("ClickHouse: CLICKHOUSE_SKIP_USER_SETUP %q, want 1: the image's entrypoint would write its users into users.d", value(v))
	}
	if dep, ok := ch.DependsOn["clickhouse-users"]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("ClickHouse does not wait for clickhouse-users to complete")
	}
	for _, port := range ch.Ports {
		if port.HostIP != "127.0.0.1" {
			t.Errorf("ClickHouse publishes port %d on %q, want 127.0.0.1 only", port.Target, port.HostIP)
		}
	}

	for _, name := range []string{"aggregator", "alerter"} {
		env := p.Services[name].Environment
		dsn, file := env["TOKENMETER_CLICKHOUSE_DSN"], env["TOKENMETER_CLICKHOUSE_PASSWORD_FILE"]
		if dsn == nil || *dsn != "clickhouse://tokenmeter_writer@clickhouse:9000" {
			t.Errorf("%s: TOKENMETER_CLICKHOUSE_DSN %q, want clickhouse://tokenmeter_writer@clickhouse:9000", name, value(dsn))
		}
		if file == nil || *file != writerFile || volumeAt(name, *file) != writerVol {
			t.Errorf("%s: TOKENMETER_CLICKHOUSE_PASSWORD_FILE %q, want %s in volume %s", name, value(file), writerFile, writerVol)
		}
		if got := strings.Join(volumes(name), " "); got != "clickhouse-writer" {
			t.Errorf("%s mounts ClickHouse volumes %q, want clickhouse-writer alone", name, got)
		}
	}

	var ds struct {
		Datasources []struct {
			JSONData struct {
				Username string `json:"username"`
			} `json:"jsonData"`
			SecureJSONData struct {
				Password string `json:"password"`
			} `json:"secureJsonData"`
		} `json:"datasources"`
	}
	data, err := os.ReadFile("grafana/provisioning/datasources/clickhouse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &ds); err != nil || len(ds.Datasources) != 1 {
		t.Fatalf("parse the data source: %v", err)
	}
	d := ds.Datasources[0]
	if d.JSONData.Username != "tokenmeter_reader" || d.SecureJSONData.Password != "$__file{"+readerFile+"}" {
		t.Errorf("Grafana's data source: user %q, password %q; want tokenmeter_reader, $__file{%s}", d.JSONData.Username, d.SecureJSONData.Password, readerFile)
	}
	if got := strings.Join(volumes("grafana"), " "); got != "clickhouse-reader" || volumeAt("grafana", readerFile) != readerVol {
		t.Errorf("grafana mounts ClickHouse volumes %q, want clickhouse-reader alone, at %s", got, filepath.Dir(readerFile))
	}
}

// value is an environment variable's value, "" when unset.
func value(v *string) string {
	if v == nil {
		return ""
	}
	return *v
}
