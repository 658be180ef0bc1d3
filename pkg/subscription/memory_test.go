package subscription

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	"github.com/heraldhq/herald/pkg/configstore"
)

// heapInUse returns the bytes of live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// simSubscription is the i-th subscription of a Truphone-like tenant:
// SIMs with 19-digit ICCIDs, each registered for both of Truphone's
// notification types, to one of ten URLs.
func simSubscription(i int) Subscription {
	names := [2]string{"USAGE_THRESHOLD", "SUBSCRIPTION_END"}
	return Subscription{
		Tenant: "truphone-tenant", ResourceType: "sim", ResourceID: fmt.Sprintf("894447460%010d", i/2),
		Notification: names[i%2], WebhookURL: fmt.Sprintf("https://hooks.example.com/herald/%d", i%10), Format: "truphone",
	}
}

// indexBytesPerSubscription fills an index with n subscriptions and
// returns the heap it holds per subscription.
func indexBytesPerSubscription(n int) float64 {
	before := heapInUse()
	x := NewIndex()
	for i := range n {
		x.Put(simSubscription(i))
	}
	after := heapInUse()
	runtime.KeepAlive(x)
	return float64(after-before) / float64(n)
}

// BenchmarkIndexMemory reports the heap one million subscriptions take in
// the index: go test -run '^$' -bench IndexMemory -benchtime 1x ./pkg/subscription/
func BenchmarkIndexMemory(b *testing.B) {
	var per float64
	for b.Loop() {
		per = indexBytesPerSubscription(1_000_000)
	}
	b.ReportMetric(per, "B/subscription")
	b.ReportMetric(per*1e6/(1<<20), "MiB/million")
}

// BenchmarkConfigDocumentMemory is the comparison: the same million held
// as config documents (key, envelope and JSON spec, not even decoded),
// which is what putting subscriptions in the config topic would cost every
// service.
func BenchmarkConfigDocumentMemory(b *testing.B) {
	var per float64
	const n = 1_000_000
	for b.Loop() {
		before := heapInUse()
		docs := map[string]configstore.Document{}
		for i := range n {
			s := simSubscription(i)
			spec, _ := json.Marshal(s)
			d := configstore.Document{Kind: "subscription", Tenant: s.Tenant, ID: s.ResourceType + "/" + s.ResourceID + "/" + s.Notification, Version: 1, Spec: spec}
			docs[d.Key()] = d
		}
		after := heapInUse()
		runtime.KeepAlive(docs)
		per = float64(after-before) / n
	}
	b.ReportMetric(per, "B/subscription")
	b.ReportMetric(per*1e6/(1<<20), "MiB/million")
}
