package devstack_test

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OTLP/HTTP trace endpoint that keeps every span it is
// sent.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []receivedSpan
}

type receivedSpan struct {
	trace, id, parent string
	name, scope       string
	attrs             map[string]*commonpb.AnyValue
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	raw, _ := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				attrs := map[string]*commonpb.AnyValue{}
				for _, kv := range sp.GetAttributes() {
					attrs[kv.GetKey()] = kv.GetValue()
				}
				o.spans = append(o.spans, receivedSpan{
					trace: hex.EncodeToString(sp.GetTraceId()), id: hex.EncodeToString(sp.GetSpanId()),
					parent: hex.EncodeToString(sp.GetParentSpanId()), name: sp.GetName(), scope: ss.GetScope().GetName(), attrs: attrs,
				})
			}
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// inTrace returns the spans received so far of one trace.
func (o *otlpReceiver) inTrace(trace string) []receivedSpan {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []receivedSpan
	for _, s := range o.spans {
		if s.trace == trace {
			out = append(out, s)
		}
	}
	return out
}

// TestOneTracePerEventFromIngestToWebhook posts one event with an
// upstream's traceparent to a stack exporting traces with OTLP/HTTP, as
// the standard OTEL_* variables ask, and finds the ingest request, the
// evaluation and the delivery attempt in the upstream's trace, and that
// trace's id in the traceparent the webhook receives.
func TestOneTracePerEventFromIngestToWebhook(t *testing.T) {
	otlp := &otlpReceiver{}
	collector := httptest.NewServer(otlp)
	t.Cleanup(collector.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_SDK_DISABLED", "")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	s := startRealStack(t)

	traceparents := make(chan string, 4)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		traceparents <- r.Header.Get("traceparent")
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)
	dest := s.call(http.MethodPost, "/v1/destinations", `{"type":"webhook","name":"traced","webhook":{"url":"`+receiver.URL+`/hook"}}`, http.StatusCreated)
	rule := s.call(http.MethodPost, "/v1/rules", `{"name":"low data","on":{"entityTypes":["Balance"],"operations":["UPDATE"]},`+
		`"when":"new.remaining < new.total * 0.2 && old.remaining >= old.total * 0.2",`+
		`"notification":{"name":"UnitAllowanceThreshold","state":"low"},"destinations":["`+dest["id"].(string)+`"]}`, http.StatusCreated)
	ruleID := rule["id"].(string)

	const (
		traceID  = "4bf92f3577b34da6a3ce929d0e0e4736"
		upstream = "00f067aa0ba902b7"
	)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.api+"/v1/events", strings.NewReader(simEvent("8944000000000000001")))
	req.Header.Set("Authorization", "Bearer "+s.key)
	req.Header.Set("traceparent", "00-"+traceID+"-"+upstream+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/events = %d, want 202", resp.StatusCode)
	}

	select {
	case tp := <-traceparents:
		if parts := strings.Split(tp, "-"); len(parts) != 4 || parts[1] != traceID {
			t.Errorf("webhook traceparent %q, want one of trace %s", tp, traceID)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no webhook delivery within 30s")
	}

	type want struct {
		what  string
		match func(receivedSpan) bool
	}
	wants := []want{
		{"ingest's request span, child of the upstream's", func(sp receivedSpan) bool {
			return sp.name == "POST /v1/events" && sp.parent == upstream
		}},
		{"the event's publish span", func(sp receivedSpan) bool { return strings.HasSuffix(sp.name, "events publish") }},
		{"the evaluation with its rule and one match", func(sp receivedSpan) bool {
			return sp.name == "evaluate" && sp.scope == "herald/rule-evaluator" &&
				sp.attrs["herald.matches"].GetIntValue() == 1 &&
				slices.ContainsFunc(sp.attrs["herald.rules"].GetArrayValue().GetValues(), func(v *commonpb.AnyValue) bool { return v.GetStringValue() == ruleID })
		}},
		{"the notification's publish span", func(sp receivedSpan) bool { return strings.HasSuffix(sp.name, "notifications publish") }},
		{"the first webhook attempt, delivered with 204", func(sp receivedSpan) bool {
			return sp.name == "deliver webhook" && sp.scope == "herald/delivery" &&
				sp.attrs["herald.attempt"].GetIntValue() == 1 && sp.attrs["herald.destination"].GetStringValue() == dest["id"] &&
				sp.attrs["herald.status_code"].GetIntValue() == http.StatusNoContent
		}},
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		spans := otlp.inTrace(traceID)
		var missing []string
		for _, w := range wants {
			if !slices.ContainsFunc(spans, w.match) {
				missing = append(missing, w.what)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var names []string
			for _, sp := range spans {
				names = append(names, sp.scope+": "+sp.name)
			}
			t.Fatalf("trace %s lacks %s; it has %v", traceID, strings.Join(missing, ", "), names)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
