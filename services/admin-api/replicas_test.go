package adminapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/envconfig"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/kafka/kafkatest"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/service/servicetest"
	adminapi "github.com/heraldhq/herald/services/admin-api"
)

// startReplica starts an admin API on common, as one more replica of the
// same deployment.
func startReplica(t *testing.T, common service.Config) *adminStack {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), adminWait)
	defer cancel()
	var cfg adminapi.Config
	if err := envconfig.Defaults(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Config, cfg.AdminToken = common, operatorToken
	api, err := adminapi.New(ctx, cfg)
	if err != nil {
		t.Fatalf("adminapi.New: %v", err)
	}
	servicetest.Run(t, api)
	mux := http.NewServeMux()
	api.Routes(mux)
	return &adminStack{t: t, api: api, cfg: cfg.Config, store: api.Store(), mux: mux}
}

// TestReplicasAgreeOnConditionalUpdates runs two admin-API replicas on the
// real broker and has both update the same resources with the same
// If-Match at once (200 requests): for each version exactly one wins
// (200) and the other gets 412, and both replicas' views end identical.
func TestReplicasAgreeOnConditionalUpdates(t *testing.T) {
	common := servicetest.Fakes(t, 1)
	common.Kafka = kafka.Config{Brokers: kafkatest.Brokers(t), TopicPrefix: kafkatest.Prefix(t), Partitions: 2, ReplicationFactor: 1, CreateTopics: true}
	a := startReplica(t, common)
	b := startReplica(t, common)
	key := a.tenant("acme")
	dests := []string{a.destination(key, "one"), a.destination(key, "two")}
	etag := func(s *adminStack, id string) string {
		return s.want(http.StatusOK, "GET", "/v1/destinations/"+id, key, "").header.Get("ETag")
	}
	// sameETag waits until both replicas serve the same version of id.
	sameETag := func(id string) string {
		deadline := time.Now().Add(adminWait)
		for {
			if ea, eb := etag(a, id), etag(b, id); ea == eb {
				return ea
			}
			if time.Now().After(deadline) {
				t.Fatalf("replicas serve different versions of %s", id)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	const races = 50
	statuses := map[int]int{}
	for round := range races {
		for _, id := range dests {
			tag := sameETag(id)
			var wg sync.WaitGroup
			got := make([]int, 2)
			for i, s := range []*adminStack{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					body := fmt.Sprintf(`{"type":"webhook","name":"r%d-%d","webhook":{"url":"https://hooks.example.com/%s"}}`, round, i, id)
					got[i] = s.serve(t.Context(), "PUT", "/v1/destinations/"+id, key, []byte(body), "If-Match", tag).Code
				}()
			}
			wg.Wait()
			statuses[got[0]]++
			statuses[got[1]]++
			ok, failed := 0, 0
			for _, c := range got {
				switch c {
				case http.StatusOK:
					ok++
				case http.StatusPreconditionFailed:
					failed++
				}
			}
			if ok != 1 || failed != 1 {
				t.Fatalf("round %d, %s at %s: answers %v, want one 200 and one 412", round, id, tag, got)
			}
		}
	}
	for _, id := range dests {
		sameETag(id)
		da, _ := a.store.Get("acme", configstore.KindDestination, id)
		db, _ := b.store.Get("acme", configstore.KindDestination, id)
		if da.Version != db.Version || string(da.Spec) != string(db.Spec) || !strings.Contains(string(da.Spec), `"name":"r`) {
			t.Errorf("%s: replicas hold v%d %s and v%d %s", id, da.Version, da.Spec, db.Version, db.Spec)
		}
	}
	t.Logf("answers over %d races: %v", 2*races, statuses)
}
