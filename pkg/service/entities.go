package service

import (
	"context"
	"slices"
	"strings"

	"github.com/twmb/avro"

	"github.com/heraldhq/herald/pkg/rules"
	"github.com/heraldhq/herald/schemas"
)

// Entity returns an entity type as rules see it: the fields of every
// registered version of its event schema. fresh skips the registry cache,
// for when a rule names a field only a just-registered version has.
func (b *Base) Entity(ctx context.Context, entityType string, fresh bool) (rules.Entity, error) {
	versions, err := b.Registry.Versions(ctx, b.EventSubject(entityType), fresh)
	if err != nil {
		return rules.Entity{}, err
	}
	parsed := make([]*avro.Schema, len(versions))
	for i, v := range versions {
		parsed[i] = v.Schema
	}
	return rules.EntityFromSchemas(entityType, parsed)
}

// Entities returns the entity types a rule watches, by name.
func (b *Base) Entities(ctx context.Context, entityTypes []string, fresh bool) (map[string]rules.Entity, error) {
	out := make(map[string]rules.Entity, len(entityTypes))
	for _, et := range entityTypes {
		e, err := b.Entity(ctx, et, fresh)
		if err != nil {
			return nil, err
		}
		out[et] = e
	}
	return out, nil
}

// EntityTypes returns the entity types that have an event schema on the
// events topic, sorted.
func (b *Base) EntityTypes(ctx context.Context) ([]string, error) {
	subjects, err := b.Registry.Subjects(ctx)
	if err != nil {
		return nil, err
	}
	prefix := b.Topics.Events + "-" + schemas.EventNamespace + "."
	var out []string
	for _, s := range subjects {
		if et, ok := strings.CutPrefix(s, prefix); ok {
			out = append(out, et)
		}
	}
	slices.Sort(out)
	return out, nil
}
