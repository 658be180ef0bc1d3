package kafka_test

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/kafka"
)

func TestGroupProtocol(t *testing.T) {
	for _, tc := range []struct {
		protocol   string
		err        string // part of the validation error; empty: valid
		serverSide bool
	}{
		{protocol: "", serverSide: false},
		{protocol: "classic", serverSide: false},
		{protocol: "consumer", serverSide: true},
		{protocol: "Consumer", err: "HERALD_KAFKA_GROUP_PROTOCOL"},
		{protocol: "cooperative", err: "HERALD_KAFKA_GROUP_PROTOCOL"},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			c := kafka.Config{Brokers: []string{"127.0.0.1:1"}, Partitions: 1, GroupProtocol: tc.protocol}
			err := c.Validate()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Validate() = %v, want an error naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			opts, err := kafka.ClientOptions(c, "test", slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			cl, err := kgo.NewClient(append(opts, kgo.ConsumerGroup("g"), kgo.ConsumeTopics("t"))...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if got := cl.OptValue(kgo.ServerSideBalancer); got != tc.serverSide {
				t.Errorf("server-side balancing %v, want %v", got, tc.serverSide)
			}
		})
	}
}
