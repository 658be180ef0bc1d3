package eventbridgesender_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/peertest"
)

// template is the CloudFormation template a tenant runs to create its bus.
const template = "../../deploy/aws/eventbridge-bus.yaml"

// TestTenantTemplatePassesCfnLint runs cfn-lint over the template for
// three regions and fails on any finding, informational ones included.
func TestTenantTemplatePassesCfnLint(t *testing.T) {
	python := peertest.Python(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	lint := filepath.Join(filepath.Dir(python), "cfn-lint")
	out, err := exec.CommandContext(ctx, lint, "--non-zero-exit-code", "informational",
		"--regions", "us-east-1", "eu-west-1", "ap-southeast-2", "--", template).CombinedOutput()
	if err != nil {
		t.Fatalf("cfn-lint %s: %v\n%s", template, err, out)
	}
}

// TestTenantTemplateMakesWhatTheTenantNeeds reads the template as
// CloudFormation does (cfn-lint's decoder, which knows the short forms
// such as !Sub) and checks what a tenant relies on: a bus that Herald's
// account, a parameter, may put events on; an archive of the bus; a log
// group under /aws/events/ that a rule copies every event to; the log
// group's resource policy for EventBridge; and the bus ARN as an output.
func TestTenantTemplateMakesWhatTheTenantNeeds(t *testing.T) {
	python := peertest.Python(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	script := `import json, sys, cfnlint.decode
tpl, problems = cfnlint.decode.decode(sys.argv[1])
if problems:
    sys.exit("\n".join(str(p) for p in problems))
json.dump(tpl, sys.stdout, default=str)`
	out, err := exec.CommandContext(ctx, python, "-c", script, template).Output()
	if err != nil {
		t.Fatalf("decode %s: %v", template, err)
	}
	var tpl struct {
		Parameters map[string]map[string]any
		Resources  map[string]struct {
			Type       string
			DependsOn  any
			Properties map[string]any
		}
		Outputs map[string]map[string]any
	}
	if err := json.Unmarshal(out, &tpl); err != nil {
		t.Fatal(err)
	}
	byType := map[string]string{}
	for name, r := range tpl.Resources {
		if _, dup := byType[r.Type]; dup {
			t.Errorf("two resources of type %s", r.Type)
		}
		byType[r.Type] = name
	}
	prop := func(typ, path string) any {
		name, ok := byType[typ]
		if !ok {
			t.Fatalf("no %s", typ)
		}
		var v any = tpl.Resources[name].Properties
		for _, k := range strings.Split(path, ".") {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		return v
	}
	want := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
	}
	bus := byType["AWS::Events::EventBus"]
	busArn := map[string]any{"Fn::GetAtt": []any{bus, "Arn"}}
	logGroupArn := map[string]any{"Fn::GetAtt": []any{byType["AWS::Logs::LogGroup"], "Arn"}}

	if p := tpl.Parameters["HeraldAccountId"]; p == nil || p["AllowedPattern"] != "^[0-9]{12}$" {
		t.Errorf("HeraldAccountId parameter: %v; want a 12-digit account id", p)
	}
	want("bus policy's bus", prop("AWS::Events::EventBusPolicy", "EventBusName"), map[string]any{"Ref": bus})
	want("bus policy's effect", prop("AWS::Events::EventBusPolicy", "Statement.Effect"), "Allow")
	want("bus policy's action", prop("AWS::Events::EventBusPolicy", "Statement.Action"), "events:PutEvents")
	want("bus policy's principal", prop("AWS::Events::EventBusPolicy", "Statement.Principal.AWS"),
		map[string]any{"Fn::Sub": "arn:${AWS::Partition}:iam::${HeraldAccountId}:root"})
	want("archive's source", prop("AWS::Events::Archive", "SourceArn"), busArn)
	if name, _ := prop("AWS::Logs::LogGroup", "LogGroupName").(map[string]any)["Fn::Sub"].(string); !strings.HasPrefix(name, "/aws/events/") {
		t.Errorf("log group name %q; want it under /aws/events/", name)
	}
	want("rule's bus", prop("AWS::Events::Rule", "EventBusName"), map[string]any{"Ref": bus})
	want("rule's pattern", prop("AWS::Events::Rule", "EventPattern"), map[string]any{"source": []any{map[string]any{"prefix": ""}}})
	want("rule's targets", len(prop("AWS::Events::Rule", "Targets").([]any)), 1)
	want("rule's target", prop("AWS::Events::Rule", "Targets").([]any)[0].(map[string]any)["Arn"], logGroupArn)
	want("rule waits for the log policy", tpl.Resources[byType["AWS::Events::Rule"]].DependsOn, byType["AWS::Logs::ResourcePolicy"])

	doc, _ := prop("AWS::Logs::ResourcePolicy", "PolicyDocument").(map[string]any)["Fn::Sub"].(string)
	var policy struct {
		Statement []struct {
			Effect    string
			Principal struct{ Service []string }
			Action    []string
			Resource  string
		}
	}
	if err := json.Unmarshal([]byte(doc), &policy); err != nil || len(policy.Statement) != 1 {
		t.Fatalf("log group policy %q: %v", doc, err)
	}
	s := policy.Statement[0]
	if s.Effect != "Allow" || !slices.Contains(s.Principal.Service, "events.amazonaws.com") ||
		!slices.Contains(s.Action, "logs:CreateLogStream") || !slices.Contains(s.Action, "logs:PutLogEvents") || s.Resource != "${LogGroup.Arn}" {
		t.Errorf("log group policy %+v; want events.amazonaws.com allowed to create streams and put events in the log group", s)
	}
	want("EventBusArn output", tpl.Outputs["EventBusArn"]["Value"], busArn)
}
