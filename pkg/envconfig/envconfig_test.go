package envconfig_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/envconfig"
)

type inner struct {
	Brokers []string      `env:"BROKERS" envDefault:"127.0.0.1:9092" envSeparator:","`
	Wait    time.Duration `env:"WAIT" envDefault:"1s"`
}

type config struct {
	Kafka inner `envPrefix:"KAFKA_"`
	Batch int   `env:"BATCH" envDefault:"10"`
}

func (c config) Validate() error {
	if c.Batch < 1 {
		return errors.New("HERALD_BATCH: must be at least 1")
	}
	return nil
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    config
		wantErr string
	}{
		{name: "defaults", want: config{Kafka: inner{Brokers: []string{"127.0.0.1:9092"}, Wait: time.Second}, Batch: 10}},
		{name: "nested prefix and list", env: map[string]string{"HERALD_KAFKA_BROKERS": "a:1,b:2", "HERALD_BATCH": "3"},
			want: config{Kafka: inner{Brokers: []string{"a:1", "b:2"}, Wait: time.Second}, Batch: 3}},
		{name: "parse error names the variable", env: map[string]string{"HERALD_KAFKA_WAIT": "soon"}, wantErr: "HERALD_KAFKA_WAIT"},
		{name: "validation error", env: map[string]string{"HERALD_BATCH": "0"}, wantErr: "HERALD_BATCH: must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var got config
			err := envconfig.Load(&got)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load() error = %v, want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got.Kafka.Brokers, ",") != strings.Join(tt.want.Kafka.Brokers, ",") || got.Kafka.Wait != tt.want.Kafka.Wait || got.Batch != tt.want.Batch {
				t.Errorf("Load() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDefaultsIgnoreTheEnvironment(t *testing.T) {
	t.Setenv("HERALD_SAMPLE_N", "9")
	var c struct {
		N int    `env:"SAMPLE_N" envDefault:"3"`
		S string `env:"SAMPLE_S" envDefault:"x"`
	}
	if err := envconfig.Defaults(&c); err != nil {
		t.Fatal(err)
	}
	if c.N != 3 || c.S != "x" {
		t.Errorf("Defaults = %+v, want the envDefault values", c)
	}
}
