// Package kubernetes holds deploy/kubernetes, tokenmeter's manifests. This test decodes every
// manifest strictly into the Kubernetes API types (an unknown or misspelt field fails), and
// checks what a schema cannot: probes and resource requests on every container, references
// between objects, the single-writer rule, three stream replicas, and NATS's users, keys and
// network policies.
package kubernetes

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/tokenmeter/tokenmeter/deploy/internal/commands"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/natsconn"
	"github.com/tokenmeter/tokenmeter/stage/ops"
)

const repoRoot = "../.."

// objects is every object of the manifests, by kind.
type objects struct {
	namespaces   []corev1.Namespace
	configMaps   map[string]corev1.ConfigMap
	secrets      map[string]corev1.Secret
	services     []corev1.Service
	deployments  map[string]appsv1.Deployment
	statefulSets map[string]appsv1.StatefulSet
	jobs         []batchv1.Job
	policies     []networkingv1.NetworkPolicy
}

// strict decodes doc into v, refusing unknown fields.
func strict(doc []byte, v any) error { return yaml.UnmarshalStrict(doc, v) }

func load(t *testing.T) (objects, []string) {
	t.Helper()
	o := objects{configMaps: map[string]corev1.ConfigMap{}, secrets: map[string]corev1.Secret{},
		deployments: map[string]appsv1.Deployment{}, statefulSets: map[string]appsv1.StatefulSet{}}
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	for _, f := range files {
		if f == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			where := fmt.Sprintf("%s, document %d", f, i+1)
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name      string `json:"name"`
					Namespace string `json:"namespace"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			if meta.Metadata.Name == "" {
				t.Errorf("%s: no metadata.name", where)
			}
			if meta.Kind != "Namespace" && meta.Metadata.Namespace != "tokenmeter" {
				t.Errorf("%s: %s %s is in namespace %q, want tokenmeter", where, meta.Kind, meta.Metadata.Name, meta.Metadata.Namespace)
			}
			var err2 error
			switch kind := meta.APIVersion + " " + meta.Kind; kind {
			case "v1 Namespace":
				var v corev1.Namespace
				err2 = strict([]byte(doc), &v)
				o.namespaces = append(o.namespaces, v)
			case "v1 ConfigMap":
				var v corev1.ConfigMap
				err2 = strict([]byte(doc), &v)
				o.configMaps[v.Name] = v
			case "v1 Secret":
				var v corev1.Secret
				err2 = strict([]byte(doc), &v)
				o.secrets[v.Name] = v
			case "v1 Service":
				var v corev1.Service
				err2 = strict([]byte(doc), &v)
				o.services = append(o.services, v)
			case "apps/v1 Deployment":
				var v appsv1.Deployment
				err2 = strict([]byte(doc), &v)
				o.deployments[v.Name] = v
			case "apps/v1 StatefulSet":
				var v appsv1.StatefulSet
				err2 = strict([]byte(doc), &v)
				o.statefulSets[v.Name] = v
			case "networking.k8s.io/v1 NetworkPolicy":
				var v networkingv1.NetworkPolicy
				err2 = strict([]byte(doc), &v)
				o.policies = append(o.policies, v)
			case "batch/v1 Job":
				var v batchv1.Job
				err2 = strict([]byte(doc), &v)
				o.jobs = append(o.jobs, v)
			default:
				err2 = fmt.Errorf("unexpected kind %q", kind)
			}
			if err2 != nil {
				t.Errorf("%s: %v", where, err2)
			}
		}
	}
	o.generated(t)
	return o, files
}

// kustomization is what kustomization.yaml may hold.
type kustomization struct {
	APIVersion         string   `json:"apiVersion"`
	Kind               string   `json:"kind"`
	Namespace          string   `json:"namespace"`
	Resources          []string `json:"resources"`
	ConfigMapGenerator []struct {
		Name  string   `json:"name"`
		Files []string `json:"files"`
	} `json:"configMapGenerator"`
}

// generated adds to o the ConfigMaps kustomization.yaml generates from files, each file a key.
func (o objects) generated(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := strict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	for _, g := range k.ConfigMapGenerator {
		cm := corev1.ConfigMap{Data: map[string]string{}}
		cm.Name, cm.Namespace = g.Name, "tokenmeter"
		for _, f := range g.Files {
			content, err := os.ReadFile(f)
			if err != nil {
				t.Errorf("ConfigMap %s: %v", g.Name, err)
			}
			cm.Data[filepath.Base(f)] = string(content)
		}
		o.configMaps[g.Name] = cm
	}
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	_, files := load(t)
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := strict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	var want []string
	for _, f := range files {
		if f != "kustomization.yaml" {
			want = append(want, f)
		}
	}
	got := append([]string(nil), k.Resources...)
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(want, " ") || k.Namespace != "tokenmeter" {
		t.Errorf("kustomization lists %v in %q, want %v in tokenmeter", got, k.Namespace, want)
	}
}

// workloads returns every pod template with the name of its owner.
func (o objects) workloads() map[string]corev1.PodTemplateSpec {
	w := map[string]corev1.PodTemplateSpec{}
	for n, d := range o.deployments {
		w["Deployment "+n] = d.Spec.Template
	}
	for n, s := range o.statefulSets {
		w["StatefulSet "+n] = s.Spec.Template
	}
	return w
}

func TestWorkloads(t *testing.T) {
	o, _ := load(t)
	for _, name := range []string{"collector", "enricher", "aggregator", "alerter"} {
		if _, ok := o.deployments[name]; !ok {
			t.Errorf("no Deployment %s", name)
		}
	}
	for _, name := range []string{"nats", "clickhouse"} {
		if _, ok := o.statefulSets[name]; !ok {
			t.Errorf("no StatefulSet %s", name)
		}
	}
	for owner, tpl := range o.workloads() {
		for _, c := range tpl.Spec.Containers {
			where := owner + ", container " + c.Name
			if c.ReadinessProbe == nil || c.LivenessProbe == nil {
				t.Errorf("%s: needs a readiness and a liveness probe", where)
			}
			for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
				if p == nil || p.HTTPGet == nil {
					continue
				}
				if !hasPort(c, p.HTTPGet.Port) {
					t.Errorf("%s: a probe uses port %s, which the container does not declare", where, p.HTTPGet.Port.String())
				}
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("%s: needs CPU and memory requests", where)
			}
			if c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s: needs a memory limit", where)
			}
			o.checkRefs(t, where, c, tpl.Spec.Volumes)
		}
	}
	// Single writers: two aggregators would both write every partition, two alerters page twice.
	for _, name := range []string{"aggregator", "alerter"} {
		d := o.deployments[name]
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("Deployment %s: replicas %v, strategy %q; want exactly 1 and Recreate", name, d.Spec.Replicas, d.Spec.Strategy.Type)
		}
	}
	// Every Service selects a workload and targets a port it declares.
	for _, s := range o.services {
		matched := false
		for _, tpl := range o.workloads() {
			if selects(s.Spec.Selector, tpl.Labels) {
				matched = true
				for _, p := range s.Spec.Ports {
					target := p.TargetPort
					if target.IntVal == 0 && target.StrVal == "" {
						target = intstr.FromInt32(p.Port)
					}
					if !hasPort(tpl.Spec.Containers[0], target) {
						t.Errorf("Service %s: port %s is not declared by the pods it selects", s.Name, target.String())
					}
				}
			}
		}
		if !matched {
			t.Errorf("Service %s selects no workload (%v)", s.Name, s.Spec.Selector)
		}
	}
	for owner, tpl := range o.workloads() {
		var sel map[string]string
		if d, ok := o.deployments[strings.TrimPrefix(owner, "Deployment ")]; ok && strings.HasPrefix(owner, "Deployment ") {
			sel = d.Spec.Selector.MatchLabels
		} else {
			sel = o.statefulSets[strings.TrimPrefix(owner, "StatefulSet ")].Spec.Selector.MatchLabels
		}
		if len(sel) == 0 || !selects(sel, tpl.Labels) {
			t.Errorf("%s: its selector %v does not match its pod labels %v", owner, sel, tpl.Labels)
		}
	}
	for _, j := range o.jobs {
		for _, c := range j.Spec.Template.Spec.Containers {
			o.checkRefs(t, "Job "+j.Name, c, j.Spec.Template.Spec.Volumes)
		}
	}
}

func hasPort(c corev1.Container, p intstr.IntOrString) bool {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return true
		}
	}
	return false
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// checkRefs checks that every ConfigMap, Secret and key a container uses is in the manifests.
func (o objects) checkRefs(t *testing.T, where string, c corev1.Container, volumes []corev1.Volume) {
	t.Helper()
	env := map[string]bool{}
	for _, e := range c.EnvFrom {
		switch {
		case e.ConfigMapRef != nil:
			cm, ok := o.configMaps[e.ConfigMapRef.Name]
			if !ok {
				t.Errorf("%s: no ConfigMap %s", where, e.ConfigMapRef.Name)
			}
			for k := range cm.Data {
				env[k] = true
			}
		case e.SecretRef != nil:
			s, ok := o.secrets[e.SecretRef.Name]
			if !ok {
				t.Errorf("%s: no Secret %s", where, e.SecretRef.Name)
			}
			for k := range s.StringData {
				env[k] = true
			}
		}
	}
	for _, e := range c.Env {
		env[e.Name] = true
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			ref := e.ValueFrom.SecretKeyRef
			if _, ok := o.secrets[ref.Name].StringData[ref.Key]; !ok {
				t.Errorf("%s: no key %s in Secret %s", where, ref.Key, ref.Name)
			}
		}
	}
	for _, v := range volumes {
		if v.ConfigMap != nil {
			if _, ok := o.configMaps[v.ConfigMap.Name]; !ok {
				t.Errorf("%s: volume %s: no ConfigMap %s", where, v.Name, v.ConfigMap.Name)
			}
		}
	}
	// $(VAR) in args must be defined, or Kubernetes passes it through verbatim.
	for _, a := range c.Args {
		for _, m := range regexp.MustCompile(`\$\(([A-Z_]+)\)`).FindAllStringSubmatch(a, -1) {
			if !env[m[1]] {
				t.Errorf("%s: args use $(%s), which the container's environment does not define", where, m[1])
			}
		}
	}
}

// TestServiceCommands checks that the tokenmeter services run binaries the Dockerfile builds,
// with flags and environment variables those binaries read.
func TestServiceCommands(t *testing.T) {
	o, _ := load(t)
	dockerfile, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "compose", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{}
	for _, m := range regexp.MustCompile(`\./([a-z]+/cmd/([a-z]+))`).FindAllStringSubmatch(string(dockerfile), -1) {
		dirs[m[2]] = m[1]
	}
	for name, d := range o.deployments {
		c := d.Spec.Template.Spec.Containers[0]
		if len(c.Command) != 1 {
			t.Errorf("Deployment %s: command %v, want one binary", name, c.Command)
			continue
		}
		dir, ok := dirs[c.Command[0]]
		if !ok {
			t.Errorf("Deployment %s runs %s, which the Dockerfile does not build", name, c.Command[0])
			continue
		}
		src := mainSource(t, dir)
		for _, a := range c.Args {
			if flag, ok := strings.CutPrefix(a, "-"); ok && !defines(dir, src, flag) {
				t.Errorf("Deployment %s: flag -%s is not defined in %s", name, flag, dir)
			}
		}
		for _, e := range c.Env {
			if !reads(dir, src, e.Name) {
				t.Errorf("Deployment %s: %s is not read by %s", name, e.Name, dir)
			}
		}
		for _, e := range c.EnvFrom {
			if e.SecretRef == nil {
				continue
			}
			for k := range o.secrets[e.SecretRef.Name].StringData {
				if !reads(dir, src, k) {
					t.Errorf("Deployment %s: %s (Secret %s) is not read by %s", name, k, e.SecretRef.Name, dir)
				}
			}
		}
	}
}

func mainSource(t *testing.T, dir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(repoRoot, dir, "*.go"))
	var src bytes.Buffer
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src.Write(data)
		}
	}
	if !bytes.Contains(src.Bytes(), []byte("package main")) {
		t.Errorf("%s holds no main package", dir)
	}
	return src.String()
}

// TestNATSCluster checks the cluster of three: one route per replica, each naming a pod of the
// StatefulSet through its headless Service.
func TestNATSCluster(t *testing.T) {
	o, _ := load(t)
	sts := o.statefulSets["nats"]
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
		t.Fatalf("StatefulSet nats: replicas %v, want 3", sts.Spec.Replicas)
	}
	conf := o.configMaps["nats-config"].Data["nats.conf"]
	routes := regexp.MustCompile(`nats://(nats-\d)\.`+sts.Spec.ServiceName+`\.tokenmeter\.svc\.cluster\.local:6222`).FindAllStringSubmatch(conf, -1)
	var pods []string
	for _, r := range routes {
		pods = append(pods, r[1])
	}
	if strings.Join(pods, " ") != "nats-0 nats-1 nats-2" {
		t.Errorf("cluster routes name %v, want nats-0 nats-1 nats-2 through %s", pods, sts.Spec.ServiceName)
	}
	for _, want := range []string{"jetstream {", "store_dir: /data", "server_name: $SERVER_NAME"} {
		if !strings.Contains(conf, want) {
			t.Errorf("nats.conf lacks %q", want)
		}
	}
}

// TestStreamReplicas checks that the stages, which create the streams and their consumers at
// start-up (stream.Ensure), are told to give them three replicas, under the variable of the
// flag that sets it.
func TestStreamReplicas(t *testing.T) {
	o, _ := load(t)
	const key = "TOKENMETER_STREAM_REPLICAS"
	if got := o.configMaps["tokenmeter"].Data[key]; got != "3" {
		t.Errorf("ConfigMap tokenmeter: %s = %q, want 3", key, got)
	}
	fs := flag.NewFlagSet("streams", flag.ContinueOnError)
	new(stream.Options).RegisterFlags(fs)
	if fs.Lookup(ops.FlagOf(key)) == nil {
		t.Errorf("%s sets -%s, which the stages do not define", key, ops.FlagOf(key))
	}
}

// TestNATSAuth checks that NATS admits the users of the Secret tokenmeter-nats-auth, that each
// service mounts its own key and nothing else, and that only the services reach NATS.
func TestNATSAuth(t *testing.T) {
	o, _ := load(t)
	if conf := o.configMaps["nats-config"].Data["nats.conf"]; !strings.Contains(conf, `include "auth.conf"`) {
		t.Errorf("nats.conf does not include auth.conf")
	}
	var authConf bool
	for _, v := range o.statefulSets["nats"].Spec.Template.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.Secret != nil && src.Secret.Name == "tokenmeter-nats-auth" && len(src.Secret.Items) == 1 && src.Secret.Items[0].Key == "auth.conf" {
				authConf = true
			}
		}
	}
	if !authConf {
		t.Errorf("StatefulSet nats does not mount auth.conf of Secret tokenmeter-nats-auth beside nats.conf")
	}

	var clients []string
	for name, d := range o.deployments {
		spec := d.Spec.Template.Spec
		c := spec.Containers[0]
		if !strings.HasPrefix(c.Image, "tokenmeter:") {
			continue // not a tokenmeter service
		}
		key := ""
		for _, e := range c.Env {
			if e.Name == "TOKENMETER_NATS_NKEY" {
				key = e.Value
			}
		}
		if want := "/etc/tokenmeter/nats/" + name + ".nk"; key != want {
			t.Errorf("Deployment %s: TOKENMETER_NATS_NKEY %q, want its own key %s", name, key, want)
		}
		var items []string
		for _, v := range spec.Volumes {
			if v.Secret != nil && v.Secret.SecretName == "tokenmeter-nats-auth" {
				for _, it := range v.Secret.Items {
					items = append(items, it.Key)
				}
			}
		}
		if got := strings.Join(items, " "); got != name+".nk" {
			t.Errorf("Deployment %s mounts %q of Secret tokenmeter-nats-auth, want %s.nk alone", name, got, name)
		}
		clients = append(clients, name)
	}
	sort.Strings(clients)

	var denyAll bool
	peers := map[string][]string{} // NATS port -> the pods allowed to reach it
	for _, p := range o.policies {
		if len(p.Spec.PodSelector.MatchLabels) == 0 && len(p.Spec.PodSelector.MatchExpressions) == 0 && len(p.Spec.Ingress) == 0 {
			denyAll = true
		}
		if p.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] != "nats" {
			continue
		}
		for _, in := range p.Spec.Ingress {
			for _, port := range in.Ports {
				for _, from := range in.From {
					if from.PodSelector == nil || from.NamespaceSelector != nil || from.IPBlock != nil {
						t.Errorf("NetworkPolicy %s: port %s open beyond the namespace's pods", p.Name, port.Port)
						continue
					}
					peers[port.Port.String()] = append(peers[port.Port.String()], selected(from.PodSelector)...)
				}
			}
		}
	}
	if !denyAll {
		t.Error("no NetworkPolicy denies ingress to every pod by default")
	}
	sort.Strings(peers["4222"])
	if got, want := strings.Join(peers["4222"], " "), strings.Join(clients, " "); got != want {
		t.Errorf("NATS 4222 is open to %q, want the services that connect to it, %q", got, want)
	}
	if got := strings.Join(peers["6222"], " "); got != "nats" {
		t.Errorf("NATS 6222 is open to %q, want nats alone", got)
	}
	if len(peers) != 2 {
		t.Errorf("NATS ports open: %v, want 4222 and 6222", peers)
	}
}

// selected is the app.kubernetes.io/name values a pod selector of the manifests names.
func selected(s *metav1.LabelSelector) []string {
	var names []string
	if n, ok := s.MatchLabels["app.kubernetes.io/name"]; ok {
		names = append(names, n)
	}
	for _, e := range s.MatchExpressions {
		if e.Key == "app.kubernetes.io/name" && e.Operator == metav1.LabelSelectorOpIn {
			names = append(names, e.Values...)
		}
	}
	return names
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

// TestClickHouseUsers checks that no ClickHouse password is in the manifests, that ClickHouse
// takes its users from the Secret clickhouse-users through clickhouse-users.sh, and that the
// aggregator and the alerter connect as tokenmeter_writer with the writer's password alone.
func TestClickHouseUsers(t *testing.T) {
	o, files := load(t)
	for _, f := range append(files, "kustomization.yaml") {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, re := range []string{`CLICKHOUSE_PASSWORD\b`, `clickhouse://[^@\s"]*:[^@\s"]*@`, `(?m)^\s*password:`, `(?m)^\s*(writer|reader)\.password:`} {
			if m := regexp.MustCompile(re).FindString(string(data)); m != "" {
				t.Errorf("%s holds a ClickHouse password: %q", f, m)
			}
		}
	}
	if _, ok := o.secrets["clickhouse-users"]; ok {
		t.Error("the Secret clickhouse-users is in the manifests; the operator creates it")
	}

	// secretItems is what a pod mounts of the Secret clickhouse-users, by mount path.
	secretItems := func(spec corev1.PodSpec, c corev1.Container) map[string]string {
		items := map[string]string{}
		for _, m := range c.VolumeMounts {
			for _, v := range spec.Volumes {
				if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == "clickhouse-users" {
					var keys []string
					for _, it := range v.Secret.Items {
						keys = append(keys, it.Key+"="+filepath.Join(m.MountPath, it.Path))
					}
					items[m.MountPath] = strings.Join(keys, " ")
				}
			}
		}
		return items
	}

	ch := o.statefulSets["clickhouse"].Spec.Template.Spec
	if len(ch.InitContainers) != 1 {
		t.Fatalf("StatefulSet clickhouse: %d init containers, want 1 (users)", len(ch.InitContainers))
	}
	init := ch.InitContainers[0]
	if len(init.Command) != 5 || init.Command[0] != "bash" {
		t.Fatalf("init container %s runs %q, want bash clickhouse-users.sh WRITER READER USERS", init.Name, init.Command)
	}
	script, writer, reader, users := init.Command[1], init.Command[2], init.Command[3], init.Command[4]
	var scriptFrom, usersVolume string
	for _, m := range init.VolumeMounts {
		for _, v := range ch.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.ConfigMap != nil && filepath.Dir(script) == m.MountPath {
				scriptFrom = o.configMaps[v.ConfigMap.Name].Data[filepath.Base(script)]
			}
			if v.EmptyDir != nil && filepath.Dir(users) == m.MountPath {
				usersVolume = v.Name
			}
		}
	}
	if want, _ := os.ReadFile("clickhouse-users.sh"); scriptFrom == "" || scriptFrom != string(want) {
		t.Errorf("init container %s does not run clickhouse-users.sh from its ConfigMap (%s)", init.Name, script)
	}
	wantItems := "writer.password=" + writer + " reader.password=" + reader
	if got := secretItems(ch, init)[filepath.Dir(writer)]; got != wantItems {
		t.Errorf("init container %s mounts %q of Secret clickhouse-users, want %q", init.Name, got, wantItems)
	}
	server := ch.Containers[0]
	mountsUsers := false
	for _, m := range server.VolumeMounts {
		mountsUsers = mountsUsers || m.Name == usersVolume && m.MountPath == "/etc/clickhouse-server/users.d"
	}
	if usersVolume == "" || !mountsUsers {
		t.Errorf("ClickHouse does not mount the users %s writes (volume %q) at /etc/clickhouse-server/users.d", init.Name, usersVolume)
	}
	env := map[string]string{}
	for _, e := range server.Env {
		env[e.Name] = e.Value
	}
	if env["CLICKHOUSE_SKIP_USER_SETUP"] != "1" {
		t.Errorf("ClickHouse: CLICKHOUSE_SKIP_USER_SETUP %q, want 1: the image's entrypoint would write its users into users.d", env["CLICKHOUSE_SKIP_USER_SETUP"])
	}

	for name, d := range o.deployments {
		spec := d.Spec.Template.Spec
		c := spec.Containers[0]
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		items := secretItems(spec, c)
		if name != "aggregator" && name != "alerter" {
			if len(items) != 0 || env["TOKENMETER_CLICKHOUSE_DSN"] != "" {
				t.Errorf("Deployment %s connects to ClickHouse (%v, %q), which only the aggregator and the alerter do here", name, items, env["TOKENMETER_CLICKHOUSE_DSN"])
			}
			continue
		}
		if got := env["TOKENMETER_CLICKHOUSE_DSN"]; got != "clickhouse://tokenmeter_writer@clickhouse:9000" {
			t.Errorf("Deployment %s: TOKENMETER_CLICKHOUSE_DSN %q, want clickhouse://tokenmeter_writer@clickhouse:9000", name, got)
		}
		file := env["TOKENMETER_CLICKHOUSE_PASSWORD_FILE"]
		if got, want := fmt.Sprint(items), fmt.Sprintf("map[%s:writer.password=%s]", filepath.Dir(file), file); file == "" || got != want {
			t.Errorf("Deployment %s mounts %s of Secret clickhouse-users and reads the password from %q; want the writer's password alone, %s", name, got, file, want)
		}
	}
}
