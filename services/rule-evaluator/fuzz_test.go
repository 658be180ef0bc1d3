package ruleevaluator

import (
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/avro"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/schemas"
)

// FuzzEvaluate feeds the evaluator's per-record path two kinds of input:
// arbitrary bytes, and valid Avro of every built-in event schema written
// from the fuzzer's bytes (NaN, ±Infinity, -0, huge numbers, large maps and
// arrays, strings of any bytes). Whatever the input, judging it never
// panics and never asks for an abort: it yields notifications, or
// notifications and one dead letter, or one dead letter alone.
func FuzzEvaluate(f *testing.F) {
	e, rec := testEvaluator(f, "new.remaining < old.remaining", "old.remaining / new.remaining > 1.5")
	ctx, topics := f.Context(), e.base.Topics
	var types []string
	for _, r := range schemas.Events() {
		types = append(types, strings.TrimPrefix(r.Name, schemas.EventNamespace+"."))
	}
	entities, err := e.base.Entities(ctx, types, false)
	if err != nil {
		f.Fatal(err)
	}
	// One rule per built-in type that fires on every event, so that every
	// image of every type is written as JSON.
	for _, typ := range types {
		r, err := e.compiler.Compile("acme", "all-"+typ, configstore.Rule{
			Name: "all", On: configstore.RuleOn{EntityTypes: []string{typ}},
			When: "true", Notification: configstore.RuleNotify{Name: "Changed", State: "changed"},
		}, entities)
		if err != nil {
			f.Fatal(err)
		}
		e.index.Put(r)
	}
	writers := make([]writer, len(types))
	for i, typ := range types {
		s, err := e.base.Registry.Latest(ctx, event.Subject(topics.Events, typ))
		if err != nil {
			f.Fatal(err)
		}
		writers[i] = writer{id: s.ID, root: s.Schema.Root(), entityType: typ}
	}

	// The writer writes what decodes: an event of every type, all of its
	// doubles NaN, fires the type's catch-all rule and is dead-lettered
	// by none.
	for i, w := range writers {
		out, _, err := e.evaluate(ctx, &kgo.Record{Topic: topics.Events, Key: rec.Key, Value: w.write([]byte{0})})
		if err != nil || len(out) == 0 || out[0].Topic != topics.Notifications || out[len(out)-1].Topic == topics.EventsDLQ {
			f.Fatalf("%s written from zeros: %d records, %v; want its notification and no dead letter", w.entityType, len(out), err)
		}
		f.Add(true, []byte{byte(i)})
	}
	f.Add(false, rec.Value)
	f.Add(true, []byte{0})
	f.Add(true, []byte{3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255, 254, 0, 0, 1})
	f.Add(false, []byte{0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, generate bool, data []byte) {
		value := data
		if generate && len(data) > 0 {
			w := writers[int(data[0])%len(writers)]
			value = w.write(data[1:])
		}
		out, _, err := e.evaluate(ctx, &kgo.Record{Topic: topics.Events, Key: rec.Key, Value: value})
		if err != nil {
			t.Fatalf("evaluate asked for an abort: %v", err)
		}
		dead := 0
		for _, r := range out {
			if r.Topic == topics.EventsDLQ {
				dead++
			}
		}
		if dead > 1 {
			t.Fatalf("%d dead letters for one event", dead)
		}
	})
}

// writer writes valid Avro of one event schema in the Confluent wire
// format, every choice taken from the fuzzer's bytes.
type writer struct {
	id         int
	root       *avro.SchemaNode
	entityType string
}

func (w writer) write(data []byte) []byte {
	src := &source{data: data}
	out := binary.BigEndian.AppendUint32([]byte{0}, uint32(w.id))
	named := map[string]*avro.SchemaNode{}
	collect(w.root, named)
	return w.node(out, w.root, "", named, src, 0)
}

func (w writer) node(out []byte, n *avro.SchemaNode, field string, named map[string]*avro.SchemaNode, src *source, depth int) []byte {
	if def, ok := named[n.Type]; ok {
		n = def
	} else if def, ok := named[n.Namespace+"."+n.Type]; ok {
		n = def
	}
	switch n.Type {
	case "null":
		return out
	case "boolean":
		return append(out, src.byte()&1)
	case "int":
		return binary.AppendVarint(out, int64(int32(src.uint64())))
	case "long":
		return binary.AppendVarint(out, int64(src.uint64()))
	case "float":
		return binary.LittleEndian.AppendUint32(out, math.Float32bits(float32(src.float())))
	case "double":
		return binary.LittleEndian.AppendUint64(out, math.Float64bits(src.float()))
	case "string", "bytes":
		// The envelope's keys are kept meaningful so that rules match.
		var s []byte
		switch field {
		case "tenantId":
			s = []byte("acme")
		case "entityType":
			s = []byte(w.entityType)
		default:
			s = src.bytes()
		}
		return append(binary.AppendVarint(out, int64(len(s))), s...)
	case "fixed":
		for range n.Size {
			out = append(out, src.byte())
		}
		return out
	case "enum":
		return binary.AppendVarint(out, int64(int(src.byte())%len(n.Symbols)))
	case "union":
		i := int(src.byte()) % len(n.Branches)
		if depth > 8 {
			i = slices.IndexFunc(n.Branches, func(b avro.SchemaNode) bool { return b.Type == "null" })
			i = max(i, 0)
		}
		out = binary.AppendVarint(out, int64(i))
		return w.node(out, &n.Branches[i], field, named, src, depth+1)
	case "array", "map":
		count := src.count()
		if depth > 8 {
			count = 0
		}
		if count > 0 {
			out = binary.AppendVarint(out, int64(count))
			for range count {
				if n.Type == "map" {
					k := src.bytes()
					out = append(binary.AppendVarint(out, int64(len(k))), k...)
					out = w.node(out, n.Values, "", named, src, depth+1)
				} else {
					out = w.node(out, n.Items, "", named, src, depth+1)
				}
			}
		}
		return binary.AppendVarint(out, 0)
	case "record", "error":
		for i := range n.Fields {
			out = w.node(out, &n.Fields[i].Type, n.Fields[i].Name, named, src, depth+1)
		}
		return out
	}
	panic("schema type " + n.Type + " not written by the fuzz writer")
}

func collect(n *avro.SchemaNode, named map[string]*avro.SchemaNode) {
	switch n.Type {
	case "record", "error", "enum", "fixed":
		name := n.Name
		if n.Namespace != "" && !strings.Contains(name, ".") {
			name = n.Namespace + "." + name
		}
		named[name] = n
		named[n.Name] = n
		for i := range n.Fields {
			collect(&n.Fields[i].Type, named)
		}
	case "array":
		collect(n.Items, named)
	case "map":
		collect(n.Values, named)
	case "union":
		for i := range n.Branches {
			collect(&n.Branches[i], named)
		}
	}
}

// source hands out the fuzzer's bytes, zeros once they run out.
type source struct {
	data []byte
	at   int
}

func (s *source) byte() byte {
	if s.at >= len(s.data) {
		return 0
	}
	b := s.data[s.at]
	s.at++
	return b
}

func (s *source) uint64() uint64 {
	var v uint64
	for range 8 {
		v = v<<8 | uint64(s.byte())
	}
	return v
}

// float favours the values JSON cannot say and the edges of float64.
func (s *source) float() float64 {
	special := []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1), math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, 0, 1, 600}
	if b := s.byte(); int(b) < len(special)*16 {
		return special[int(b)%len(special)]
	}
	return math.Float64frombits(s.uint64())
}

// count is an array's or map's length: mostly small, now and then large.
func (s *source) count() int {
	b := s.byte()
	if b == 255 {
		return 1000
	}
	return int(b % 8)
}

func (s *source) bytes() []byte {
	n := int(s.byte() % 32)
	out := make([]byte, 0, n)
	for range n {
		out = append(out, s.byte())
	}
	return out
}
