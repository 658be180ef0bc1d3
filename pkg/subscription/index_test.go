package subscription

import (
	"reflect"
	"testing"
)

func sub(tenant, typ, id, name, url string) Subscription {
	return Subscription{Tenant: tenant, ResourceType: typ, ResourceID: id, Notification: name, WebhookURL: url}
}

func TestIndexKeepsOneSubscriptionPerResourceAndName(t *testing.T) {
	x := NewIndex()
	x.Put(sub("acme", "Sim", "8944", "USAGE_THRESHOLD", "https://a.example/1"))
	x.Put(sub("acme", "sim", "8944", "USAGE_THRESHOLD", "https://a.example/2")) // replaces
	x.Put(sub("acme", "Sim", "8944", "SUBSCRIPTION_END", "https://a.example/1"))
	x.Put(sub("acme", "Sim", "8945", "USAGE_THRESHOLD", "https://a.example/1"))
	x.Put(sub("globex", "Sim", "8944", "USAGE_THRESHOLD", "https://g.example/"))
	x.Put(sub("acme", "Account", "8944", "USAGE_THRESHOLD", "https://acct.example/"))

	if x.Len() != 5 {
		t.Errorf("Len = %d, want 5", x.Len())
	}
	tests := []struct {
		tenant, typ, id, name string
		want                  string
	}{
		{"acme", "SIM", "8944", "USAGE_THRESHOLD", "sub:native:https://a.example/2"},
		{"acme", "Sim", "8944", "SUBSCRIPTION_END", "sub:native:https://a.example/1"},
		{"acme", "Sim", "8945", "USAGE_THRESHOLD", "sub:native:https://a.example/1"},
		{"acme", "Sim", "8945", "SUBSCRIPTION_END", ""},
		{"acme", "Sim", "894", "USAGE_THRESHOLD", ""},
		{"globex", "Sim", "8944", "USAGE_THRESHOLD", "sub:native:https://g.example/"},
		{"globex", "Sim", "8944", "SUBSCRIPTION_END", ""},
		{"acme", "Account", "8944", "USAGE_THRESHOLD", "sub:native:https://acct.example/"},
		{"initech", "Sim", "8944", "USAGE_THRESHOLD", ""},
	}
	for _, tt := range tests {
		got, ok := x.Ref(Resource{tt.tenant, tt.typ, tt.id}, tt.name)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("Ref(%s/%s/%s, %s) = %q, %v; want %q", tt.tenant, tt.typ, tt.id, tt.name, got, ok, tt.want)
		}
	}
	want := []Subscription{
		{Tenant: "acme", ResourceType: "sim", ResourceID: "8944", Notification: "SUBSCRIPTION_END", WebhookURL: "https://a.example/1", Format: "native"},
		{Tenant: "acme", ResourceType: "sim", ResourceID: "8944", Notification: "USAGE_THRESHOLD", WebhookURL: "https://a.example/2", Format: "native"},
	}
	if got := x.List(Resource{"acme", "Sim", "8944"}); !reflect.DeepEqual(got, want) {
		t.Errorf("List = %+v\nwant %+v", got, want)
	}
}

func TestIndexDropsTargetsNoLongerUsed(t *testing.T) {
	x := NewIndex()
	x.Put(sub("acme", "Sim", "1", "N", "https://a.example/old"))
	x.Put(sub("acme", "Sim", "2", "N", "https://a.example/old"))
	x.Put(sub("acme", "Sim", "1", "N", "https://a.example/new"))
	if _, ok := x.targets.lookup("sub:native:https://a.example/old"); !ok {
		t.Fatal("a target still used by resource 2 was dropped")
	}
	if !x.Delete(Resource{"acme", "sim", "2"}, "N") {
		t.Fatal("Delete of an existing subscription reported none")
	}
	if x.Delete(Resource{"acme", "sim", "2"}, "N") {
		t.Error("a second Delete reported a subscription")
	}
	if _, ok := x.targets.lookup("sub:native:https://a.example/old"); ok {
		t.Error("a target no subscription uses is still interned")
	}
	x.Put(sub("acme", "Sim", "3", "N", "https://a.example/third"))
	if got := len(x.targets.values); got != 2 {
		t.Errorf("%d target slots, want 2: a freed number is reused", got)
	}
	if got, _ := x.Ref(Resource{"acme", "sim", "1"}, "N"); got != "sub:native:https://a.example/new" {
		t.Errorf("resource 1: %q", got)
	}
}

func TestKeysRoundTrip(t *testing.T) {
	tests := []struct {
		r    Resource
		name string
	}{
		{Resource{"acme", "sim", "8944474600000109251"}, "USAGE_THRESHOLD"},
		{Resource{"acme", "account", "acct/with/slashes"}, "AccountStatusChange"},
	}
	for _, tt := range tests {
		r, name, err := parseKey(Key(tt.r, tt.name))
		if err != nil || r != tt.r || name != tt.name {
			t.Errorf("parseKey(Key(%v, %s)) = %v, %s, %v", tt.r, tt.name, r, name, err)
		}
	}
	for _, bad := range []string{"", "acme", "acme/sim", "acme/sim/N", "acme/sim//N", "acme/sim/id/", "/sim/id/N"} {
		if _, _, err := parseKey(bad); err == nil {
			t.Errorf("parseKey(%q) accepted", bad)
		}
	}
}
