// Package event names the parts of Herald's entity-change event envelope
// that more than one service reads: the operations and the partition key
// that orders a tenant's events.
package event

// Operations an entity-change event can carry.
var Operations = []string{"CREATE", "UPDATE", "DELETE"}

// PartitionKey orders an event among its tenant's others: the account when
// the event has one, else the entity itself. Records are keyed
// "{tenant}/{PartitionKey}".
func PartitionKey(accountID, entityType, entityID string) string {
	if accountID != "" {
		return accountID
	}
	return entityType + "/" + entityID
}

// RecordKey returns the Kafka record key of a tenant's ordering key.
func RecordKey(tenant, key string) []byte { return []byte(tenant + "/" + key) }
