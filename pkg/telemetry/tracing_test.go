package telemetry

import "testing"

func TestTracingIsOnOnlyWhenTheEnvironmentAsks(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing set", nil, false},
		{"an OTLP endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		{"a traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		{"an endpoint, exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
		{"an endpoint, SDK disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, false},
		{"the console exporter", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true},
		{"only a service name", map[string]string{"OTEL_SERVICE_NAME": "x"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tracingWanted(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Errorf("tracing on = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTracingOffIsANoOpProvider(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	tr, err := NewTracing(t.Context(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled() {
		t.Fatal("tracing is on with no OTEL_* variable set")
	}
	_, span := tr.Tracer("x").Start(t.Context(), "s")
	if span.IsRecording() {
		t.Error("a span of the off provider records")
	}
}
