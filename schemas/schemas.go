// Package schemas holds Herald's Avro schemas: one entity-change event record
// per built-in entity type, the Notification record and the DeliveryAttempt
// record. Every version of a
// record is kept (v1.avsc, v2.avsc, …) so that the registry sees them in the
// order they were written and compatibility can be checked against each
// predecessor.
//
// An event record's full name is herald.events.<EntityType>; on the events
// topic it is registered under the subject "<topic>-herald.events.<EntityType>"
// (TopicRecordNameStrategy). Any entity type whose record follows the same
// envelope works, built in or not.
package schemas

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

//go:embed events/*/*.avsc notification/*.avsc deliveryattempt/*.avsc
var files embed.FS

// EventNamespace is the Avro namespace of entity-change event records.
const EventNamespace = "herald.events"

// NotificationRecord is the full name of the Notification record.
const NotificationRecord = "herald.Notification"

// DeliveryAttemptRecord is the full name of the DeliveryAttempt record.
const DeliveryAttemptRecord = "herald.DeliveryAttempt"

// Record is one Avro record with every version of its schema, oldest first.
type Record struct {
	// Name is the record's full name, e.g. herald.events.Balance.
	Name string
	// Versions holds the schema text of each version, oldest first.
	Versions []string
}

// Latest returns the newest version of the record's schema.
func (r Record) Latest() string { return r.Versions[len(r.Versions)-1] }

// EventRecordName returns the full record name of an entity type's events.
func EventRecordName(entityType string) string { return EventNamespace + "." + entityType }

// Events returns the built-in entity-change event records, sorted by name.
func Events() []Record {
	dirs, err := fs.ReadDir(files, "events")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	out := make([]Record, 0, len(dirs))
	for _, d := range dirs {
		out = append(out, mustRecord(path.Join("events", d.Name()), EventRecordName(d.Name())))
	}
	return out
}

// Notification returns the Notification record.
func Notification() Record { return mustRecord("notification", NotificationRecord) }

// DeliveryAttempt returns the DeliveryAttempt record.
func DeliveryAttempt() Record { return mustRecord("deliveryattempt", DeliveryAttemptRecord) }

func mustRecord(dir, name string) Record {
	r, err := readRecord(dir, name)
	if err != nil {
		panic(err) // the embedded tree is fixed at build time; a test reads every file
	}
	return r
}

func readRecord(dir, name string) (Record, error) {
	entries, err := fs.ReadDir(files, dir)
	if err != nil {
		return Record{}, err
	}
	type version struct {
		n    int
		text string
	}
	var vs []version
	for _, e := range entries {
		base := strings.TrimSuffix(e.Name(), ".avsc")
		n, err := strconv.Atoi(strings.TrimPrefix(base, "v"))
		if err != nil || !strings.HasPrefix(base, "v") {
			return Record{}, fmt.Errorf("schema file %s/%s: want v<N>.avsc", dir, e.Name())
		}
		b, err := files.ReadFile(path.Join(dir, e.Name()))
		if err != nil {
			return Record{}, err
		}
		vs = append(vs, version{n, string(b)})
	}
	slices.SortFunc(vs, func(a, b version) int { return a.n - b.n })
	r := Record{Name: name}
	for i, v := range vs {
		if v.n != i+1 {
			return Record{}, fmt.Errorf("schema %s: version v%d missing", dir, i+1)
		}
		r.Versions = append(r.Versions, v.text)
	}
	return r, nil
}
