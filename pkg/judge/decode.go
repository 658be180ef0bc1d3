package judge

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/avro"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/rules"
)

// envelope is what every judgement reads of an event: all of it but its
// images, decoded straight into Go values.
type envelope struct {
	EventID       string    `avro:"eventId"`
	TenantID      string    `avro:"tenantId"`
	EntityType    string    `avro:"entityType"`
	EntityID      string    `avro:"entityId"`
	Operation     string    `avro:"operation"`
	OccurredAt    time.Time `avro:"occurredAt"`
	AccountID     *string   `avro:"accountId"`
	DeviceID      *string   `avro:"deviceId"`
	CorrelationID *string   `avro:"correlationId"`
}

// images are an event's entity images, whole, as generic values.
type images struct {
	Old any `avro:"old"`
	New any `avro:"new"`
}

// decoded is one event being judged: its envelope, read at once, and its
// images, read only as far as its rules look and only once.
type decoded struct {
	body   havro.Body
	env    envelope
	ref    notification.EventRef
	tenant string
	// generic is the whole event as generic values, when its envelope or
	// images have types other than Herald's envelope gives them, so that
	// such an event is read as leniently as any other.
	generic map[string]any
	// old and new are the whole images, once read.
	old, new map[string]any
	whole    bool
	// plan read the envelope from the wire, text, and at is where the
	// images start in it; nil when the general decoder read it. The
	// envelope's strings are parts of text, its optional ones held here.
	plan     *envelopePlan
	text     string
	at       wireImages
	optional [3]string
	// json reports that the images' JSON was written from the wire, into
	// jsonText.
	json     bool
	jsonText [2]string
}

// decode reads an event's envelope. Bytes that do not decode are a
// *RecordError; a registry that cannot be reached is any other error.
func (j *Judge) decode(ctx context.Context, value []byte) (*decoded, error) {
	body, err := j.Registry.Writer(ctx, value)
	if err != nil {
		return nil, decodeError(err)
	}
	d := &decoded{body: body}
	env := &d.env
	if plan := j.envelopePlan(body); plan != nil {
		text := string(body.Bytes)
		if at, ok := plan.read(text, env, &d.optional); ok {
			d.plan, d.text, d.at = plan, text, at
		} else {
			*env = envelope{}
		}
	}
	if d.plan == nil {
		if err := body.Decode(env); err != nil {
			return d, d.readGeneric()
		}
	}
	d.tenant = env.TenantID
	d.ref = notification.EventRef{
		ID: env.EventID, EntityType: env.EntityType, EntityID: env.EntityID, Operation: env.Operation,
		OccurredAt: env.OccurredAt, AccountID: env.AccountID, DeviceID: env.DeviceID, CorrelationID: env.CorrelationID,
	}
	return d, nil
}

// readGeneric reads the whole event as generic values.
func (d *decoded) readGeneric() error {
	var v any
	if err := d.body.Decode(&v); err != nil {
		return decodeError(err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return &RecordError{Reason: "event is not a record"}
	}
	d.generic = m
	d.ref, d.tenant = notification.Ref(m)
	d.old, _ = m["old"].(map[string]any)
	d.new, _ = m["new"].(map[string]any)
	d.whole = true
	return nil
}

func decodeError(err error) error {
	var we *havro.WireError
	if errors.As(err, &we) {
		return &RecordError{Reason: "cannot decode", Err: err}
	}
	return fmt.Errorf("decode event: %w", err)
}

// images returns the event's whole images.
func (d *decoded) images() (old, new map[string]any, err error) {
	if d.whole {
		return d.old, d.new, nil
	}
	var im images
	if err := d.body.Decode(&im); err != nil {
		if err := d.readGeneric(); err != nil {
			return nil, nil, err
		}
		return d.old, d.new, nil
	}
	d.old, _ = im.Old.(map[string]any)
	d.new, _ = im.New.(map[string]any)
	d.whole = true
	return d.old, d.new, nil
}

// imagesJSON writes the images as JSON from the wire into *oldJSON and
// *newJSON, once an event; false when the general decoder must read them.
func (d *decoded) imagesJSON(oldJSON, newJSON **string) bool {
	if d.json {
		return true
	}
	if d.plan == nil || d.plan.json == nil || d.whole || oldJSON == nil || newJSON == nil {
		return false
	}
	var texts [2]*string
	for i, p := range d.plan.json {
		if d.at[i] < 0 {
			continue
		}
		var ok bool
		if texts[i], ok = p.write(d.text, d.at[i], &d.jsonText[i]); !ok {
			return false
		}
	}
	*oldJSON, *newJSON, d.json = texts[0], texts[1], true
	return true
}

// input returns what rules that read r of the event are evaluated against:
// the images' fields they read, as CEL values, unless they read an image
// whole.
func (j *Judge) input(d *decoded, r rules.Reads) (*rules.Input, error) {
	if !r.Whole && !d.whole {
		p := j.projection(d, r)
		in, ok := p.readWire(d)
		if !ok {
			in, ok = p.decode(d)
		}
		if ok {
			if r.Event {
				in.Event = d.event()
			}
			return in, nil
		}
	}
	old, new, err := d.images()
	if err != nil {
		return nil, err
	}
	if d.generic != nil {
		return &rules.Input{Old: old, New: new, Event: d.generic}, nil
	}
	in := &rules.Input{Old: old, New: new}
	if r.Event {
		in.Event = d.event()
	}
	return in, nil
}

// event returns the envelope as `event` reads it, in CEL values.
func (d *decoded) event() map[string]any {
	m := map[string]any{
		"eventId": rules.Value(d.ref.ID), "tenantId": rules.Value(d.tenant), "entityType": rules.Value(d.ref.EntityType),
		"entityId": rules.Value(d.ref.EntityID), "operation": rules.Value(d.ref.Operation), "occurredAt": rules.Value(d.ref.OccurredAt),
	}
	optional := func(k string, s *string) {
		if s != nil {
			m[k] = rules.Value(*s)
		}
	}
	optional("accountId", d.ref.AccountID)
	optional("deviceId", d.ref.DeviceID)
	optional("correlationId", d.ref.CorrelationID)
	return m
}

// projection is the Go type an event's images are decoded into when rules
// read only some of their fields: a struct of the old and new images, each
// a pointer (nil when the image is null) to a struct of the fields read,
// typed as the writer's schema has them where that is a plain scalar, so
// that the decoder writes them in place.
type projection struct {
	fields []string
	typ    reflect.Type
	// wire reads the old and new images from the wire, when the envelope
	// was; nil when the reader does not read a field of them.
	wire *[2]*imagePlan
	// targets holds zeroed pointers to typ, reused: a new one each event
	// would cost reflect's lookup of the pointer type of typ, a type made
	// at run time, every time.
	targets sync.Pool
}

// get returns a zeroed pointer to the projection's type, to decode into.
func (p *projection) get() any {
	if t := p.targets.Get(); t != nil {
		return t
	}
	return reflect.New(p.typ).Interface()
}

// projectionKey names a projection: the writer's schema and the fields.
type projectionKey struct {
	schema int
	fields string
}

var anyType = reflect.TypeFor[any]()

// projection returns the projection of the fields r names for events
// written with d's schema, made once.
func (j *Judge) projection(d *decoded, r rules.Reads) *projection {
	key := projectionKey{d.body.ID, r.Key()}
	if p, ok := j.projections.Load(key); ok {
		return p.(*projection)
	}
	p := newProjection(d.body.Schema, j.envelopePlan(d.body), r.Fields)
	actual, _ := j.projections.LoadOrStore(key, p)
	return actual.(*projection)
}

// decode reads the images' fields with the general decoder; false when it
// cannot.
func (p *projection) decode(d *decoded) (*rules.Input, bool) {
	target := p.get()
	err := d.body.Decode(target)
	v := reflect.ValueOf(target).Elem()
	var in *rules.Input
	if err == nil {
		in = &rules.Input{Old: p.image(v.Field(0)), New: p.image(v.Field(1))}
	}
	v.SetZero()
	p.targets.Put(target)
	return in, in != nil
}

// readWire reads the images' fields from the wire, for an event whose
// envelope was; false when the general decoder must.
func (p *projection) readWire(d *decoded) (*rules.Input, bool) {
	if p.wire == nil || d.plan == nil {
		return nil, false
	}
	// The input, its records and their values in two allocations.
	w := &wireInput{}
	values := make([]any, 2*len(p.fields))
	var images [2]any
	for i, plan := range p.wire {
		if d.at[i] < 0 {
			continue
		}
		var ok bool
		w.records[i].Values = values[i*len(p.fields) : (i+1)*len(p.fields) : (i+1)*len(p.fields)]
		if images[i], ok = plan.read(d.text, d.at[i], &w.records[i]); !ok {
			return nil, false
		}
	}
	w.in.Old, w.in.New = images[0], images[1]
	return &w.in, true
}

// wireInput is an input the wire reader read: the input and the records
// its images point to.
type wireInput struct {
	in      rules.Input
	records [2]rules.Record
}

// envelopePlan returns the wire reader's plan of body's writer schema,
// made once; nil when the reader does not read the schema.
func (j *Judge) envelopePlan(body havro.Body) *envelopePlan {
	if p, ok := j.envelopes.Load(body.Schema); ok {
		return p.(*envelopePlan)
	}
	p, _ := j.envelopes.LoadOrStore(body.Schema, newEnvelopePlan(body.Schema.Root().ExpandReferences()))
	return p.(*envelopePlan)
}

// newProjection makes the projection of fields for events written with
// schema, whose wire reader's plan is plan (nil: none).
func newProjection(schema *avro.Schema, plan *envelopePlan, fields []string) *projection {
	root := schema.Root().ExpandReferences()
	image := func(name string) reflect.Type {
		var record *avro.SchemaNode
		for i := range root.Fields {
			if f := &root.Fields[i]; f.Name == name {
				record = recordOf(&f.Type)
			}
		}
		sf := make([]reflect.StructField, len(fields))
		for i, f := range fields {
			sf[i] = reflect.StructField{Name: "F" + strconv.Itoa(i), Type: fieldType(record, f), Tag: reflect.StructTag("avro:" + strconv.Quote(f))}
		}
		return reflect.PointerTo(reflect.StructOf(sf))
	}
	p := &projection{fields: fields, typ: reflect.StructOf([]reflect.StructField{
		{Name: "Old", Type: image("old"), Tag: `avro:"old"`},
		{Name: "New", Type: image("new"), Tag: `avro:"new"`},
	})}
	if plan != nil {
		p.wire = plan.imagePlans(fields)
	}
	return p
}

// recordOf returns the record an image field holds, or nil.
func recordOf(n *avro.SchemaNode) *avro.SchemaNode {
	if n.Type == "record" {
		return n
	}
	for i := range n.Branches {
		if n.Branches[i].Type == "record" {
			return &n.Branches[i]
		}
	}
	return nil
}

// fieldType returns the Go type a record's field is decoded into: its own
// for a scalar without a logical type (a pointer to it when nullable), any
// for the rest, which decodes as generically as the whole image does.
func fieldType(record *avro.SchemaNode, name string) reflect.Type {
	if record == nil {
		return anyType
	}
	for _, f := range record.Fields {
		if f.Name != name {
			continue
		}
		n := &f.Type
		if n.Type == "union" && len(n.Branches) == 2 && (n.Branches[0].Type == "null" || n.Branches[1].Type == "null") {
			v := &n.Branches[0]
			if v.Type == "null" {
				v = &n.Branches[1]
			}
			if t := scalarType(v); t != nil {
				return reflect.PointerTo(t)
			}
			return anyType
		}
		if t := scalarType(n); t != nil {
			return t
		}
	}
	return anyType
}

func scalarType(n *avro.SchemaNode) reflect.Type {
	if n.LogicalType != "" {
		return nil
	}
	switch n.Type {
	case "double":
		return reflect.TypeFor[float64]()
	case "float":
		return reflect.TypeFor[float32]()
	case "long":
		return reflect.TypeFor[int64]()
	case "int":
		return reflect.TypeFor[int32]()
	case "string", "enum":
		return reflect.TypeFor[string]()
	case "boolean":
		return reflect.TypeFor[bool]()
	}
	return nil
}

// image returns a decoded image's fields as rules read them; nil when the
// image is null.
func (p *projection) image(v reflect.Value) any {
	if v.IsNil() {
		return nil
	}
	v = v.Elem()
	r := &rules.Record{Names: p.fields, Values: make([]any, len(p.fields))}
	for i := range p.fields {
		r.Values[i] = rules.ValueOf(v.Field(i))
	}
	return r
}
