package catalog

import "strings"

// m3ter returns m3ter's three events of every entity: created, updated and
// deleted, each with an optional calculation, as m3ter's notification
// rules have.
func m3ter() []*Entry {
	event := func(name, title, op, state string) *Entry {
		return &Entry{
			Name: name, Title: title, Vendor: M3ter, Trigger: Change,
			Description: "An entity of the given type is " + state + ", and the calculation, when given, is true. " +
				"Any entity type with a registered schema works.",
			On:           On{Operations: []string{op}},
			Notification: Notification{Name: name, State: state},
			Parameters: []Parameter{
				{Name: "entityType", Type: String, Pattern: `^[A-Za-z][A-Za-z0-9_]{0,63}$`, Description: "The entity type, such as Commitment or Account."},
				{Name: "calculation", Type: Expression, Default: "",
					Description: "A condition over old, new and event, in CEL or m3ter's spelling (AND, OR, isnull, null); empty for every event."},
			},
			Exclusions: []string{"an event on which the calculation is false"},
			sources:    map[string]string{"on.entityTypes": "entityType", "when": "calculation"},
			build: func(v Values) parts {
				when := v.String("calculation")
				if strings.TrimSpace(when) == "" {
					when = "true"
				}
				return parts{entityTypes: []string{v.String("entityType")}, when: when}
			},
		}
	}
	return []*Entry{
		event("EntityCreated", "Created", "CREATE", "created"),
		event("EntityUpdated", "Updated", "UPDATE", "updated"),
		event("EntityDeleted", "Deleted", "DELETE", "deleted"),
	}
}
