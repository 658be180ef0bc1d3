package catalog

import (
	"fmt"
	"regexp"
)

// logiSense returns LogiSense's fifteen events. LogiSense names them in
// words; the entries' names are those words in one identifier.
func logiSense() []*Entry {
	return []*Entry{
		{
			Name: "ServiceStateTransition", Title: "Service State Transition", Vendor: LogiSense, Trigger: Change,
			Description: "A service moves from one provisioning state to another (preactive to active, active to suspended, …). " +
				"The prior and new states are tokens of the notification. fromState and toState match the status whatever its case; " +
				"where the schema lists the status values (an enum), they must be among them.",
			On:           On{EntityTypes: []string{"Service"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "ServiceStateTransition", State: "changed", Fields: []string{"serviceName", "priorState", "newState"}},
			Parameters: []Parameter{
				{Name: "fromState", Type: String, Default: "", Description: "Only transitions out of this state; empty for any."},
				{Name: "toState", Type: String, Default: "", Description: "Only transitions into this state; empty for any."},
			},
			Exclusions: []string{"a change that keeps the state"},
			values:     map[string]string{"fromState": "status", "toState": "status"},
			build: func(v Values) parts {
				when := "old.status != new.status"
				if s := v.String("fromState"); s != "" {
					when += " && " + sameText("old.status", s)
				}
				if s := v.String("toState"); s != "" {
					when += " && " + sameText("new.status", s)
				}
				return parts{when: when, fields: map[string]string{
					"serviceName": "new.name", "priorState": "old.status", "newState": "new.status",
				}}
			},
		},
		{
			Name: "AccountStatusChange", Title: "Account Status Change", Vendor: LogiSense, Trigger: Change,
			Description:  "An account's status changes. The prior and new statuses are tokens of the notification.",
			On:           On{EntityTypes: []string{"Account"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "AccountStatusChange", State: "changed", Fields: []string{"priorStatus", "newStatus"}},
			Exclusions:   []string{"a change that keeps the status"},
			build: func(Values) parts {
				return parts{when: "old.status != new.status", fields: map[string]string{"priorStatus": "old.status", "newStatus": "new.status"}}
			},
		},
		{
			Name: "AccountCancellation", Title: "Account Cancellation", Vendor: LogiSense, Trigger: Change,
			Description:  "An account's status becomes cancelled.",
			On:           On{EntityTypes: []string{"Account"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "AccountCancellation", State: "cancelled"},
			Exclusions:   []string{"an account already cancelled"},
			build:        statusBecomes("cancelled"),
		},
		{
			Name: "BillRunStarted", Title: "Bill Run Started", Vendor: LogiSense, Trigger: Change,
			Description:  "A bill run starts: it is created running, or its status becomes running.",
			On:           On{EntityTypes: []string{"BillRun"}, Operations: []string{"CREATE", "UPDATE"}},
			Notification: Notification{Name: "BillRunStarted", State: "started"},
			Exclusions:   []string{"a run already running", "a run created pending, until it runs"},
			build:        statusBecomes("running"),
		},
		{
			Name: "BillRunCompleted", Title: "Bill Run Completed", Vendor: LogiSense, Trigger: Change,
			Description:  "A bill run's status becomes completed.",
			On:           On{EntityTypes: []string{"BillRun"}, Operations: []string{"CREATE", "UPDATE"}},
			Notification: Notification{Name: "BillRunCompleted", State: "completed"},
			Exclusions:   []string{"a run that fails", "a run already completed"},
			build:        statusBecomes("completed"),
		},
		{
			Name: "InvoicePosted", Title: "Invoice Posted", Vendor: LogiSense, Trigger: Change,
			Description:  "An invoice is posted (postedAt is set).",
			On:           On{EntityTypes: []string{"Invoice"}, Operations: []string{"CREATE", "UPDATE"}},
			Notification: Notification{Name: "InvoicePosted", State: "posted"},
			Exclusions:   []string{"an invoice already posted", "a draft"},
			build:        becomesSet("postedAt"),
		},
		{
			Name: "InvoiceOverdue", Title: "Invoice Overdue", Vendor: LogiSense, Trigger: Scheduled,
			Description: "An invoice is still unpaid (status posted, nothing recorded as paid, amountDue above zero) " +
				"graceDays days after its due date (dueDate): it has breached its payment terms. A due date moved later moves the notification.",
			On:           On{EntityTypes: []string{"Invoice"}},
			Notification: Notification{Name: "InvoiceOverdue", State: "overdue"},
			Exclusions:   []string{"an invoice paid, or with nothing due, by then", "a draft or void invoice", "an invoice without a due date"},
			Parameters: []Parameter{
				{Name: "graceDays", Type: Integer, Default: int64(0), Minimum: ptr(0), Description: "Days after the due date before the invoice counts as overdue."},
			},
			build: func(v Values) parts {
				unpaid := `new.status == "posted" && new.paidAt == null && (new.amountDue != null ? new.amountDue : new.amount) > 0.0`
				return parts{
					at:   fmt.Sprintf(`%s ? new.dueDate + duration("%dh") : null`, unpaid, v.Int("graceDays")*24),
					when: unpaid + " && new.dueDate != null",
				}
			},
		},
		{
			Name: "InvoiceDelivery", Title: "Invoice Delivery", Vendor: LogiSense, Trigger: Change,
			Description:  "An invoice is delivered to the billing contact (deliveredAt is set).",
			On:           On{EntityTypes: []string{"Invoice"}, Operations: []string{"CREATE", "UPDATE"}},
			Notification: Notification{Name: "InvoiceDelivery", State: "delivered"},
			Exclusions:   []string{"an invoice already delivered", "an invoice posted but not delivered"},
			build:        becomesSet("deliveredAt"),
		},
		{
			Name: "InvoiceDeliveryPlusDays", Title: "Invoice Delivery Date + xt", Vendor: LogiSense, Trigger: Scheduled,
			Description: "A set number of calendar days after an invoice was delivered (deliveredAt), at a set time of day " +
				"in the tenant's time zone (timeZone; UTC when unset), whatever the UTC offset that day.",
			On:           On{EntityTypes: []string{"Invoice"}},
			Notification: Notification{Name: "InvoiceDeliveryPlusDays", State: "elapsed"},
			Exclusions:   []string{"an invoice not delivered"},
			Parameters: []Parameter{
				{Name: "days", Type: Integer, Minimum: ptr(1), Description: "Days after delivery (x)."},
				{Name: "at", Type: String, Default: "09:00", Pattern: `^([01][0-9]|2[0-3]):[0-5][0-9]$`, Description: "Time of day (t), HH:MM in the tenant's time zone."},
			},
			build: func(v Values) parts {
				return parts{
					at:   fmt.Sprintf("dayAt(new.deliveredAt, %d, %s, tenant.timeZone)", v.Int("days"), celString(v.String("at"))),
					when: "new.deliveredAt != null",
				}
			},
		},
		{
			Name: "Refund", Title: "Refund", Vendor: LogiSense, Trigger: Change,
			Description:  "A refund to an account is processed: it is created processed, or its status becomes processed.",
			On:           On{EntityTypes: []string{"Refund"}, Operations: []string{"CREATE", "UPDATE"}},
			Notification: Notification{Name: "Refund", State: "processed"},
			Exclusions:   []string{"a refund that fails", "a refund already processed"},
			build:        statusBecomes("processed"),
		},
		{
			Name: "CreditProcessed", Title: "Credit Processed", Vendor: LogiSense, Trigger: Change,
			Description:  "A credit to an account is processed: it is created processed, or its status becomes processed.",
			On:           On{EntityTypes: []string{"Credit"}, Operations: []string{"CREATE", "UPDATE"}},
			Notification: Notification{Name: "CreditProcessed", State: "processed"},
			Exclusions:   []string{"a credit voided", "a credit already processed"},
			build:        statusBecomes("processed"),
		},
		{
			Name: "ContractUnderCommit", Title: "Contract Under Commit", Vendor: LogiSense, Trigger: Change,
			Description: "A contract ends (its status becomes ended) with less used than its overall commitment (usedAmount below commitAmount); " +
				"with perTier, also a commitment tier closes (its period ended, its usage is final) with less used than committed. " +
				"The notification carries the contract's commitment, usage and shortfall when it ended under, " +
				"and each tier that closed under with its own.",
			On:           On{EntityTypes: []string{"Contract"}, Operations: []string{"CREATE", "UPDATE"}},
			Notification: Notification{Name: "ContractUnderCommit", State: "underCommit", Fields: []string{"contract", "tiers"}},
			Parameters: []Parameter{
				{Name: "perTier", Type: Boolean, Default: false, Description: "Also notify when a commitment tier closes under its commitment."},
			},
			Exclusions: []string{"a contract that meets its commitment (used equal to committed meets it)",
				"a cancelled contract", "a contract without an overall commitment (commitAmount)",
				"without perTier, a tier that closes under"},
			build: func(v Values) parts {
				ended := `new.status == "ended" && old.status != "ended"` +
					` && new.commitAmount != null && new.usedAmount != null && new.usedAmount < new.commitAmount`
				p := parts{
					when: ended,
					fields: map[string]string{
						"contract": "(" + ended + `) ? dyn({"commitAmount": new.commitAmount, "usedAmount": new.usedAmount,` +
							` "shortfall": new.commitAmount - new.usedAmount}) : dyn(null)`,
						"tiers": "[]",
					},
				}
				if v.Bool("perTier") {
					// Tiers are keyed by name, so a tier's previous state is a
					// lookup: the cost grows with the tiers, not their square.
					under := "new.commitTiers[k].closed == true && new.commitTiers[k].usedAmount < new.commitTiers[k].commitAmount" +
						" && !(old != null && k in old.commitTiers && old.commitTiers[k].closed == true)"
					p.when = "(" + ended + ") || new.commitTiers.exists(k, " + under + ")"
					p.fields["tiers"] = "new.commitTiers.filter(k, " + under + ").map(k, " +
						`{"tier": k, "commitAmount": new.commitTiers[k].commitAmount, "usedAmount": new.commitTiers[k].usedAmount,` +
						` "shortfall": new.commitTiers[k].commitAmount - new.commitTiers[k].usedAmount})`
				}
				return p
			},
		},
		{
			Name: "DormantSim", Title: "Dormant SIM", Vendor: LogiSense, Trigger: Scheduled,
			Description: "A SIM has had no usage for a set number of days. Usage is any event whose device (the envelope's deviceId) " +
				"is the SIM's iccid, as a Sim's own events and the usage events of its balances carry it, " +
				"or a later lastActivityAt on the Sim; each moves the notification to that many days after it. " +
				"Judged on the SIM as it is then.",
			On:           On{EntityTypes: []string{"Sim", "Balance"}},
			Notification: Notification{Name: "DormantSim", State: "dormant"},
			Exclusions:   []string{"a SIM no longer active by then (suspended, terminated, or already dormant)", "an event of no device"},
			Parameters: []Parameter{
				{Name: "days", Type: Integer, Default: int64(30), Minimum: ptr(1), Description: "Days without usage before the SIM counts as dormant."},
			},
			build: func(v Values) parts {
				return parts{
					timerFor: "event.deviceId",
					at:       fmt.Sprintf(`activityAt(old, new, event) + duration("%dh")`, v.Int("days")*24),
					when:     `new.status == "active"`,
				}
			},
		},
		{
			Name: "PackageCancellation", Title: "Package Cancellation", Vendor: LogiSense, Trigger: Change,
			Description:  "A package's status becomes cancelled.",
			On:           On{EntityTypes: []string{"Package"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "PackageCancellation", State: "cancelled"},
			Exclusions:   []string{"a package already cancelled", "a package deleted"},
			build:        statusBecomes("cancelled"),
		},
		{
			Name: "UsageThresholdExceeded", Title: "Usage Threshold Exceeded", Vendor: LogiSense, Trigger: Change,
			Description: "A tier of a usage bucket (an allowance Balance) is used up: its remaining amount reaches zero. " +
				"A bucket without tiers counts as one tier, the whole balance. The notification lists the tiers used up.",
			On:           On{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "UsageThresholdExceeded", State: "exceeded", Fields: []string{"tiers"}},
			Exclusions: []string{"monetary balances, and balances whose kind is not given",
				"a bucket or tier already used up", "a tiered bucket's whole balance (its tiers fire)"},
			build: func(Values) parts {
				tiered := "new.tiers != null && size(new.tiers) > 0"
				usedUp := "new.tiers[k].remaining <= 0.0 && old.tiers != null && k in old.tiers && old.tiers[k].remaining > 0.0"
				return parts{
					when: `new.kind == "allowance" && (` + tiered + " ? new.tiers.exists(k, " + usedUp + ")" +
						" : new.remaining <= 0.0 && old.remaining != null && old.remaining > 0.0)",
					fields: map[string]string{"tiers": "(" + tiered + ") ? new.tiers.filter(k, " + usedUp + ") : []"},
				}
			},
		},
	}
}

// statusBecomes fires when an entity's status changes to status, or it is
// created with it.
func statusBecomes(status string) func(Values) parts {
	s := celString(status)
	return func(Values) parts { return parts{when: "new.status == " + s + " && old.status != " + s} }
}

// sameText is a CEL condition: field holds s, whatever its case.
func sameText(field, s string) string {
	return field + " != null && " + field + ".matches(" + celString("(?i)^"+regexp.QuoteMeta(s)+"$") + ")"
}

// becomesSet fires when a timestamp field gets a value, or the entity is
// created with one.
func becomesSet(field string) func(Values) parts {
	return func(Values) parts { return parts{when: "new." + field + " != null && old." + field + " == null"} }
}
