package configstore_test

import (
	"slices"
	"testing"

	"github.com/heraldhq/herald/pkg/configstore"
)

func TestListTenantHasEveryKindOfOneTenant(t *testing.T) {
	seeds, topic := newTopic(t)
	s := openStore(t, seeds, topic)
	for _, d := range []struct{ tenant, kind, id string }{
		{"acme", configstore.KindRule, "r2"},
		{"acme", configstore.KindDestination, "d1"},
		{"acme", configstore.KindRule, "r1"},
		{"acme-2", configstore.KindRule, "r1"},
		{"acm", configstore.KindRule, "r3"},
		{configstore.OperatorTenant, configstore.KindTenant, "acme"},
	} {
		var spec any = rule(d.id)
		switch d.kind {
		case configstore.KindDestination:
			spec = configstore.Destination{Type: "webhook", Name: d.id}
		case configstore.KindTenant:
			spec = configstore.Tenant{Name: d.id}
		}
		put(t, s, doc(t, d.tenant, d.kind, d.id, spec))
	}
	var got []string
	for _, d := range s.ListTenant("acme") {
		got = append(got, d.Key())
	}
	want := []string{"acme/destination/d1", "acme/rule/r1", "acme/rule/r2"}
	if !slices.Equal(got, want) {
		t.Errorf("ListTenant(acme) = %v, want %v", got, want)
	}
}
