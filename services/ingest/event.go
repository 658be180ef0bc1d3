package ingest

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/event"
)

// record checks e and encodes it as a record of the events topic. Field
// paths in errors start with prefix.
func (in *Ingest) record(ctx context.Context, tenant string, e *event.Event, prefix string) (*kgo.Record, error) {
	key, value, err := event.Encode(ctx, in.base.Registry, in.base.Topics.Events, tenant, e, prefix)
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Key: key, Value: value}, nil
}
