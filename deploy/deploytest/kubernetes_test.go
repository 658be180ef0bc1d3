package deploytest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	"k8s.io/kube-openapi/pkg/validation/validate"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/heraldhq/herald/pkg/kafka"
)

// overlays are the kustomize overlays of deploy/kubernetes.
var overlays = []string{"dev", "prod"}

// frontDoors are the services that answer HTTP requests from outside:
// a Service and an HPA on CPU each. Every other service is a Kafka
// consumer scaled by KEDA on its group's lag.
var frontDoors = []string{"ingest", "admin-api"}

// consumedTopic returns the topic whose lag measures a consumer's work.
func consumedTopic(service string, t kafka.Topics) string {
	if service == "rule-evaluator" {
		return t.Events
	}
	return t.Notifications
}

// kubeTypes are the Kubernetes types the manifests may use, by apiVersion
// and kind.
var kubeTypes = map[string]func() any{
	"v1/ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"v1/Namespace":                           func() any { return &corev1.Namespace{} },
	"v1/Secret":                              func() any { return &corev1.Secret{} },
	"v1/Service":                             func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                     func() any { return &appsv1.Deployment{} },
	"policy/v1/PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"networking.k8s.io/v1/NetworkPolicy":     func() any { return &networkingv1.NetworkPolicy{} },
}

// kedaCRDs are KEDA's custom resources, checked against the OpenAPI schema
// of their CustomResourceDefinition (testdata/keda).
var kedaCRDs = map[string]string{
	"keda.sh/v1alpha1/ScaledObject":          "keda.sh_scaledobjects.yaml",
	"keda.sh/v1alpha1/TriggerAuthentication": "keda.sh_triggerauthentications.yaml",
}

// scaledObject is the part of KEDA's ScaledObject the checks read; the
// whole object is checked against KEDA's schema first.
type scaledObject struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		Triggers        []struct {
			Type              string            `json:"type"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind"`
			} `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

// manifests are the objects one overlay builds, decoded.
type manifests struct {
	overlay       string
	deployments   map[string]*appsv1.Deployment
	services      map[string]*corev1.Service
	configMaps    map[string]*corev1.ConfigMap
	secrets       map[string]*corev1.Secret
	hpas          []*autoscalingv2.HorizontalPodAutoscaler
	pdbs          []*policyv1.PodDisruptionBudget
	policies      []*networkingv1.NetworkPolicy
	scaledObjects []*scaledObject
	triggerAuths  map[string]bool
}

// build runs kustomize on an overlay, through kustomize's own API as
// `kubectl apply -k` does, and decodes every object strictly: a field its
// type lacks fails, as the API server's strict field validation would.
func build(t *testing.T, overlay string) *manifests {
	t.Helper()
	dir := filepath.Join(root, "deploy/kubernetes/overlays", overlay)
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := &manifests{
		overlay:     overlay,
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		triggerAuths: map[string]bool{},
	}
	for _, r := range res.Resources() {
		raw, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		gvk := r.GetApiVersion() + "/" + r.GetKind()
		where := overlay + ": " + r.GetKind() + " " + r.GetName()
		if crd, ok := kedaCRDs[gvk]; ok {
			checkAgainstCRD(t, where, crd, raw)
			switch r.GetKind() {
			case "ScaledObject":
				var so scaledObject
				decodeStrict(t, where, raw, &so.ObjectMeta, "metadata")
				if err := json.Unmarshal(raw, &so); err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				m.scaledObjects = append(m.scaledObjects, &so)
			case "TriggerAuthentication":
				m.triggerAuths[r.GetName()] = true
			}
			continue
		}
		newObj, ok := kubeTypes[gvk]
		if !ok {
			t.Errorf("%s: %s is not a type these checks know; add it to kubeTypes or kedaCRDs", where, gvk)
			continue
		}
		obj := newObj()
		decodeStrict(t, where, raw, obj, "")
		switch o := obj.(type) {
		case *appsv1.Deployment:
			m.deployments[o.Name] = o
		case *corev1.Service:
			m.services[o.Name] = o
		case *corev1.ConfigMap:
			m.configMaps[o.Name] = o
		case *corev1.Secret:
			m.secrets[o.Name] = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			m.hpas = append(m.hpas, o)
		case *policyv1.PodDisruptionBudget:
			m.pdbs = append(m.pdbs, o)
		case *networkingv1.NetworkPolicy:
			m.policies = append(m.policies, o)
		}
	}
	return m
}

// decodeStrict decodes raw (or its field, when field is set) into obj,
// failing on unknown, duplicate or case-mismatched fields.
func decodeStrict(t *testing.T, where string, raw []byte, obj any, field string) {
	t.Helper()
	if field != "" {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		raw = fields[field]
	}
	strict, err := sigsjson.UnmarshalStrict(raw, obj)
	if err != nil {
		t.Errorf("%s: %v", where, err)
	}
	for _, e := range strict {
		t.Errorf("%s: %v", where, e)
	}
}

// crdSchemas caches the strict schema of each KEDA CRD file.
var crdSchemas = map[string]*spec.Schema{}

// checkAgainstCRD validates raw against the v1alpha1 schema of the CRD in
// testdata/keda/file, made strict: an object with declared properties
// takes no others, as the API server prunes or, with strict field
// validation, refuses them.
func checkAgainstCRD(t *testing.T, where, file string, raw []byte) {
	t.Helper()
	s, ok := crdSchemas[file]
	if !ok {
		b, err := os.ReadFile(filepath.Join("testdata/keda", file))
		if err != nil {
			t.Fatal(err)
		}
		var crd struct {
			Spec struct {
				Versions []struct {
					Name   string `json:"name"`
					Schema struct {
						OpenAPIV3Schema json.RawMessage `json:"openAPIV3Schema"`
					} `json:"schema"`
				} `json:"versions"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(b, &crd); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, v := range crd.Spec.Versions {
			if v.Name == "v1alpha1" {
				s = &spec.Schema{}
				if err := json.Unmarshal(v.Schema.OpenAPIV3Schema, s); err != nil {
					t.Fatalf("%s: %v", file, err)
				}
			}
		}
		if s == nil {
			t.Fatalf("%s has no v1alpha1 schema", file)
		}
		strictSchema(s)
		crdSchemas[file] = s
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatal(err)
	}
	res := validate.NewSchemaValidator(s, nil, "", strfmt.Default).Validate(obj)
	for _, err := range res.Errors {
		t.Errorf("%s: %v", where, err)
	}
}

// strictSchema forbids properties a schema does not declare, wherever it
// declares some and does not preserve unknown fields.
func strictSchema(s *spec.Schema) {
	if len(s.Properties) > 0 && s.AdditionalProperties == nil {
		if keep, _ := s.Extensions.GetBool("x-kubernetes-preserve-unknown-fields"); !keep {
			s.AdditionalProperties = &spec.SchemaOrBool{Allows: false}
		}
	}
	for k, p := range s.Properties {
		strictSchema(&p)
		s.Properties[k] = p
	}
	if s.Items != nil {
		if s.Items.Schema != nil {
			strictSchema(s.Items.Schema)
		}
		for i := range s.Items.Schemas {
			strictSchema(&s.Items.Schemas[i])
		}
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		strictSchema(s.AdditionalProperties.Schema)
	}
}

// herald returns the Herald container of a Deployment.
func herald(t *testing.T, d *appsv1.Deployment) *corev1.Container {
	t.Helper()
	for i, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "herald" {
			return &d.Spec.Template.Spec.Containers[i]
		}
	}
	t.Fatalf("Deployment %s has no container named herald", d.Name)
	return nil
}

// placeholderSecret stands for a secret's value that the overlay does not
// hold (production creates its secrets itself).
func placeholderSecret(variable string) string {
	if variable == "HERALD_SECRET_KEY" {
		return base64.StdEncoding.EncodeToString(make([]byte, 32))
	}
	return "placeholder-secret-value"
}

// env returns the environment a container gets, with values the overlay
// does not hold (secrets it does not create, the pod's name) filled in.
func (m *manifests) env(t *testing.T, where string, c *corev1.Container) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, ok := m.configMaps[from.ConfigMapRef.Name]
			if !ok {
				t.Errorf("%s: envFrom ConfigMap %s is not in the overlay", where, from.ConfigMapRef.Name)
				continue
			}
			for k, v := range cm.Data {
				out[from.Prefix+k] = v
			}
		default:
			t.Errorf("%s: envFrom other than a ConfigMap: these checks cannot see its variables", where)
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			out[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			v, ok := m.configMaps[ref.Name].Data[ref.Key]
			if !ok {
				t.Errorf("%s: %s from ConfigMap %s key %s, which the overlay lacks", where, e.Name, ref.Name, ref.Key)
			}
			out[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s, ok := m.secrets[ref.Name]
			switch {
			case !ok:
				out[e.Name] = placeholderSecret(e.Name)
			case s.Data[ref.Key] == nil && s.StringData[ref.Key] == "":
				t.Errorf("%s: %s from Secret %s key %s, which the Secret lacks", where, e.Name, ref.Name, ref.Key)
			case s.Data[ref.Key] != nil:
				out[e.Name] = string(s.Data[ref.Key])
			default:
				out[e.Name] = s.StringData[ref.Key]
			}
		case e.ValueFrom.FieldRef != nil:
			out[e.Name] = "herald-pod-0"
		case e.ValueFrom.ResourceFieldRef != nil:
			out[e.Name] = "268435456"
		}
	}
	return out
}

func TestKubernetesOverlaysBuild(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			m := build(t, overlay)
			if len(m.deployments) == 0 {
				t.Fatal("no Deployments")
			}
		})
	}
}

func TestKubernetesDeploysEveryServiceHardened(t *testing.T) {
	mux := servedRoutes()
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			m := build(t, overlay)
			for _, name := range heraldServices(t) {
				d, ok := m.deployments[name]
				if !ok {
					t.Errorf("no Deployment %s", name)
					continue
				}
				where := "Deployment " + name
				pod := d.Spec.Template.Spec
				c := herald(t, d)
				if image, _, _ := strings.Cut(c.Image, ":"); image != "herald/"+name {
					t.Errorf("%s runs %s, want herald/%s (make images)", where, c.Image, name)
				}
				// The image's user is numeric; the pod insists on it.
				psc := pod.SecurityContext
				if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
					t.Errorf("%s: pod without runAsNonRoot", where)
				}
				sc := c.SecurityContext
				if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
					sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
					sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
					t.Errorf("%s: container security context %+v, want a read-only root, no privilege escalation, every capability dropped", where, sc)
				}
				for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					if _, ok := c.Resources.Requests[r]; !ok {
						t.Errorf("%s: no %s request", where, r)
					}
					if _, ok := c.Resources.Limits[r]; !ok {
						t.Errorf("%s: no %s limit", where, r)
					}
				}
				// Probes reach the routes every service serves, on the
				// port it listens on.
				port := httpPort(t, m.env(t, where, c))
				for probe, want := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
					if probe == nil || probe.HTTPGet == nil {
						t.Errorf("%s: no HTTP probe for %s", where, want)
						continue
					}
					if probe.HTTPGet.Path != want || !serves(mux, probe.HTTPGet.Path) {
						t.Errorf("%s: probe on %s, want %s", where, probe.HTTPGet.Path, want)
					}
					if got := containerPort(c, probe.HTTPGet.Port.String()); got != port {
						t.Errorf("%s: probe on port %s (%s), but the service listens on %s", where, probe.HTTPGet.Port.String(), got, port)
					}
				}
				if !slices.ContainsFunc(m.pdbs, func(p *policyv1.PodDisruptionBudget) bool {
					return selectsLabels(t, p.Spec.Selector, d.Spec.Template.Labels)
				}) {
					t.Errorf("%s: no PodDisruptionBudget", where)
				}
			}
		})
	}
}

// containerPort resolves a probe's port, a number or a port name, to a
// number.
func containerPort(c *corev1.Container, port string) string {
	for _, p := range c.Ports {
		if p.Name == port {
			return fmt.Sprint(p.ContainerPort)
		}
	}
	return port
}

func TestKubernetesVariablesAreReadByTheServices(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			m := build(t, overlay)
			for _, name := range sortedKeys(m.deployments) {
				d := m.deployments[name]
				where := overlay + ": Deployment " + name
				c := herald(t, d)
				environment := m.env(t, where, c)
				checkEnvironment(t, where, name, environment)
				// The static member id, wherever the service has one.
				for v := range variables(t, name) {
					if !strings.HasSuffix(v, "_INSTANCE_ID") {
						continue
					}
					i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == v })
					if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.FieldRef == nil || c.Env[i].ValueFrom.FieldRef.FieldPath != "metadata.name" {
						t.Errorf("%s: %s, the static group member id, is not the pod's name", where, v)
					}
				}
			}
			checkSecretsAreCreated(t, m)
		})
	}
}

// checkSecretsAreCreated checks that every Secret a container reads is in
// the overlay or named, with its keys, in the overlay's instructions.
func checkSecretsAreCreated(t *testing.T, m *manifests) {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(root, "deploy/kubernetes/overlays", m.overlay, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range sortedKeys(m.deployments) {
		for _, e := range herald(t, m.deployments[name]).Env {
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				continue
			}
			ref := e.ValueFrom.SecretKeyRef
			if _, ok := m.secrets[ref.Name]; ok {
				continue
			}
			create := regexp.MustCompile(`create secret generic ` + regexp.QuoteMeta(ref.Name) + `(?s:.*?)--from-literal=` + regexp.QuoteMeta(ref.Key) + `=`)
			if !create.Match(doc) {
				t.Errorf("%s: Deployment %s reads Secret %s key %s, which the overlay neither makes nor tells how to create", m.overlay, name, ref.Name, ref.Key)
			}
		}
	}
}

// kafkaTriggerKeys returns the metadata names KEDA's Kafka scaler reads,
// from the keda tags of its metadata struct (testdata/keda): a name read
// from the environment may also be given as name+"FromEnv".
func kafkaTriggerKeys(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("testdata/keda/kafka_scaler.go.txt")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, m := range regexp.MustCompile(`keda:"name=([A-Za-z]+),order=([a-zA-Z;]+)`).FindAllSubmatch(b, -1) {
		orders := strings.Split(string(m[2]), ";")
		if slices.Contains(orders, "triggerMetadata") {
			keys[string(m[1])] = true
		}
		if slices.Contains(orders, "resolvedEnv") {
			keys[string(m[1])+"FromEnv"] = true
		}
	}
	if !keys["consumerGroup"] || !keys["lagThreshold"] {
		t.Fatalf("found no Kafka trigger metadata names in kafka_scaler.go.txt: %v", keys)
	}
	return keys
}

func TestKubernetesScalesEachServiceOnItsLoad(t *testing.T) {
	triggerKeys := kafkaTriggerKeys(t)
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			m := build(t, overlay)
			for _, name := range heraldServices(t) {
				d, ok := m.deployments[name]
				if !ok {
					continue // reported by TestKubernetesDeploysEveryServiceHardened
				}
				where := "Deployment " + name
				podLabels := d.Spec.Template.Labels
				hpas := slices.DeleteFunc(slices.Clone(m.hpas), func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
					return h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != name
				})
				sos := slices.DeleteFunc(slices.Clone(m.scaledObjects), func(so *scaledObject) bool {
					return so.Spec.ScaleTargetRef.Name != name || so.Spec.ScaleTargetRef.Kind != "" && so.Spec.ScaleTargetRef.Kind != "Deployment"
				})
				if len(hpas)+len(sos) > 0 && d.Spec.Replicas != nil {
					t.Errorf("%s sets replicas, which every apply would reset under its autoscaler", where)
				}
				if slices.Contains(frontDoors, name) {
					if len(sos) > 0 || len(hpas) != 1 {
						t.Errorf("%s: %d HPAs and %d ScaledObjects, want one HPA", where, len(hpas), len(sos))
						continue
					}
					if ms := hpas[0].Spec.Metrics; len(ms) != 1 || ms[0].Resource == nil || ms[0].Resource.Name != corev1.ResourceCPU {
						t.Errorf("%s: the HPA does not scale on CPU: %+v", where, ms)
					}
					svc, ok := m.services[name]
					if !ok {
						t.Errorf("%s: no Service", where)
						continue
					}
					if len(svc.Spec.Selector) == 0 || !selectsLabels(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, podLabels) {
						t.Errorf("Service %s does not select the pods of %s", name, where)
					}
					c := herald(t, d)
					for _, p := range svc.Spec.Ports {
						if got := containerPort(c, p.TargetPort.String()); got != httpPort(t, m.env(t, where, c)) {
							t.Errorf("Service %s sends port %d to %s, not the service's HTTP port", name, p.Port, got)
						}
					}
					continue
				}
				if len(hpas) > 0 || len(sos) != 1 {
					t.Errorf("%s: %d HPAs and %d ScaledObjects, want one ScaledObject (KEDA makes its HPA)", where, len(hpas), len(sos))
					continue
				}
				checkLagTrigger(t, m, d, sos[0], triggerKeys)
			}
			for _, h := range m.hpas {
				if _, ok := m.deployments[h.Spec.ScaleTargetRef.Name]; !ok {
					t.Errorf("HPA %s scales %s, which is not deployed", h.Name, h.Spec.ScaleTargetRef.Name)
				}
			}
			for _, so := range m.scaledObjects {
				if _, ok := m.deployments[so.Spec.ScaleTargetRef.Name]; !ok {
					t.Errorf("ScaledObject %s scales %s, which is not deployed", so.Name, so.Spec.ScaleTargetRef.Name)
				}
			}
		})
	}
}

// checkLagTrigger checks a consumer's ScaledObject against the
// configuration the consumer starts with: its group, its topic, its
// brokers and credentials, and its topic's partition count as the ceiling.
func checkLagTrigger(t *testing.T, m *manifests, d *appsv1.Deployment, so *scaledObject, triggerKeys map[string]bool) {
	t.Helper()
	where := m.overlay + ": ScaledObject " + so.Name
	c := herald(t, d)
	environment := m.env(t, where, c)
	cfg := configOf(t, d.Name)
	if cfg == nil {
		return
	}
	if err := parseEnv(cfg, environment); err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	v := reflect.ValueOf(cfg).Elem()
	kc := v.FieldByName("Kafka").Interface().(kafka.Config)
	group := v.FieldByName("Group")
	if !group.IsValid() {
		t.Errorf("%s: %s's Config has no Group: which consumer group does it scale on?", where, d.Name)
		return
	}
	if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount > kc.Partitions {
		t.Errorf("%s: maxReplicaCount %v, want at most the %d partitions of the topic (HERALD_KAFKA_PARTITIONS): more replicas would idle", where, deref(so.Spec.MaxReplicaCount), kc.Partitions)
	}
	if so.Spec.MinReplicaCount != nil && so.Spec.MaxReplicaCount != nil && *so.Spec.MinReplicaCount > *so.Spec.MaxReplicaCount {
		t.Errorf("%s: minReplicaCount %d above maxReplicaCount %d", where, *so.Spec.MinReplicaCount, *so.Spec.MaxReplicaCount)
	}
	if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "kafka" {
		t.Errorf("%s: want one kafka trigger, have %+v", where, so.Spec.Triggers)
		return
	}
	tr := so.Spec.Triggers[0]
	md := tr.Metadata
	for k := range md {
		if !triggerKeys[k] {
			t.Errorf("%s: trigger metadata %q is not one KEDA's Kafka scaler reads", where, k)
		}
	}
	if md["consumerGroup"] != group.String() {
		t.Errorf("%s: consumerGroup %q, but %s's group is %q", where, md["consumerGroup"], d.Name, group.String())
	}
	if want := consumedTopic(d.Name, kc.Topics()); md["topic"] != want {
		t.Errorf("%s: topic %q, want %q", where, md["topic"], want)
	}
	brokers := md["bootstrapServers"]
	if from := md["bootstrapServersFromEnv"]; from != "" {
		if from != "HERALD_KAFKA_BROKERS" {
			t.Errorf("%s: bootstrapServersFromEnv %s, want HERALD_KAFKA_BROKERS", where, from)
		}
		brokers = environment[from]
	}
	if brokers != strings.Join(kc.Brokers, ",") {
		t.Errorf("%s: KEDA reads lag from %q, the service consumes from %q", where, brokers, strings.Join(kc.Brokers, ","))
	}
	wantSASL := map[string]string{"": "", "PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}[strings.ToUpper(kc.SASLMechanism)]
	if md["sasl"] != wantSASL && !(wantSASL == "" && md["sasl"] == "none") {
		t.Errorf("%s: sasl %q, but the service uses %q", where, md["sasl"], kc.SASLMechanism)
	}
	if wantTLS := map[bool]string{true: "enable", false: ""}[kc.TLS]; md["tls"] != wantTLS && !(wantTLS == "" && md["tls"] == "disable") {
		t.Errorf("%s: tls %q, but HERALD_KAFKA_TLS is %v", where, md["tls"], kc.TLS)
	}
	if kc.SASLMechanism != "" {
		if tr.AuthenticationRef == nil || !m.triggerAuths[tr.AuthenticationRef.Name] {
			t.Errorf("%s: SASL without a TriggerAuthentication in the overlay", where)
		}
	}
}

func deref(p *int32) any {
	if p == nil {
		return "unset"
	}
	return *p
}

func TestKubernetesOnlySendersReachTheInternet(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			m := build(t, overlay)
			for _, name := range sortedKeys(m.deployments) {
				podLabels := m.deployments[name].Spec.Template.Labels
				var ingressIsolated, egressIsolated, internet bool
				for _, np := range m.policies {
					if !selectsLabels(t, &np.Spec.PodSelector, podLabels) {
						continue
					}
					ingressIsolated = ingressIsolated || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
					egressIsolated = egressIsolated || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
					for _, rule := range np.Spec.Egress {
						internet = internet || len(rule.To) == 0 || slices.ContainsFunc(rule.To, func(p networkingv1.NetworkPolicyPeer) bool {
							return p.IPBlock != nil && (p.IPBlock.CIDR == "0.0.0.0/0" || p.IPBlock.CIDR == "::/0")
						})
					}
				}
				if !ingressIsolated || !egressIsolated {
					t.Errorf("Deployment %s: no NetworkPolicy isolates its pods (ingress %v, egress %v)", name, ingressIsolated, egressIsolated)
				}
				if sender := strings.HasSuffix(name, "-sender"); internet != sender {
					t.Errorf("Deployment %s reaches the internet: %v, want %v", name, internet, sender)
				}
			}
		})
	}
}

// selectsLabels reports whether a label selector picks pods with these
// labels; a missing selector picks none.
func selectsLabels(t *testing.T, sel *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return s.Matches(labels.Set(podLabels))
}
