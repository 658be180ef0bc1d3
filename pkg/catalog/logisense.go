package catalog

// logiSense returns LogiSense's fifteen events. LogiSense names them in
// words; the entries' names are those words in one identifier.
func logiSense() []*Entry {
	return []*Entry{
		{
			Name: "ServiceStateTransition", Title: "Service State Transition", Vendor: LogiSense, Trigger: Change,
			Description: "A service moves from one provisioning state to another (preactive to active, active to suspended, …). " +
				"The prior and new states are tokens of the notification.",
			On:           On{EntityTypes: []string{"Service"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "ServiceStateTransition", State: "changed", Fields: []string{"serviceName", "priorState", "newState"}},
			Parameters: []Parameter{
				{Name: "fromState", Type: String, Default: "", Description: "Only transitions out of this state; empty for any."},
				{Name: "toState", Type: String, Default: "", Description: "Only transitions into this state; empty for any."},
			},
			build: func(v Values) parts {
				when := "old.status != new.status"
				if s := v.String("fromState"); s != "" {
					when += " && old.status == " + celString(s)
				}
				if s := v.String("toState"); s != "" {
					when += " && new.status == " + celString(s)
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
			build: func(Values) parts {
				return parts{when: "old.status != new.status", fields: map[string]string{"priorStatus": "old.status", "newStatus": "new.status"}}
			},
		},
		{
			Name: "AccountCancellation", Title: "Account Cancellation", Vendor: LogiSense, Trigger: Change,
			Description:  "An account's status becomes cancelled.",
			On:           On{EntityTypes: []string{"Account"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "AccountCancellation", State: "cancelled"},
			build:        statusBecomes("cancelled"),
		},
		{
			Name: "BillRunStarted", Title: "Bill Run Started", Vendor: LogiSense, Trigger: Change,
			Description:  "A bill run starts: it is created running, or its status becomes running.",
			On:           On{EntityTypes: []string{"BillRun"}, Operations: []string{"CREATE", "UPDATE"}},
			Notification: Notification{Name: "BillRunStarted", State: "started"},
			build:        statusBecomes("running"),
		},
		{
			Name: "BillRunCompleted", Title: "Bill Run Completed", Vendor: LogiSense, Trigger: Change,
			Description:  "A bill run's status becomes completed.",
			On:           On{EntityTypes: []string{"BillRun"}, Operations: []string{"CREATE", "UPDATE"}},
			Notification: Notification{Name: "BillRunCompleted", State: "completed"},
			build:        statusBecomes("completed"),
		},
		{
			Name: "InvoicePosted", Title: "Invoice Posted", Vendor: LogiSense, Trigger: Change,
			Description:  "An invoice is posted (postedAt is set).",
			On:           On{EntityTypes: []string{"Invoice"}, Operations: []string{"CREATE", "UPDATE"}},
			Notification: Notification{Name: "InvoicePosted", State: "posted"},
			build:        becomesSet("postedAt"),
		},
		{
			Name: "InvoiceOverdue", Title: "Invoice Overdue", Vendor: LogiSense, Trigger: Scheduled,
			Description:  "An invoice is still unpaid (status posted, amountDue above zero) after its due date: it has breached its payment terms.",
			On:           On{EntityTypes: []string{"Invoice"}},
			Notification: Notification{Name: "InvoiceOverdue", State: "overdue"},
			Parameters: []Parameter{
				{Name: "graceDays", Type: Integer, Default: int64(0), Minimum: ptr(0), Description: "Days after the due date before the invoice counts as overdue."},
			},
		},
		{
			Name: "InvoiceDelivery", Title: "Invoice Delivery", Vendor: LogiSense, Trigger: Change,
			Description:  "An invoice is delivered to the billing contact (deliveredAt is set).",
			On:           On{EntityTypes: []string{"Invoice"}, Operations: []string{"CREATE", "UPDATE"}},
			Notification: Notification{Name: "InvoiceDelivery", State: "delivered"},
			build:        becomesSet("deliveredAt"),
		},
		{
			Name: "InvoiceDeliveryPlusDays", Title: "Invoice Delivery Date + xt", Vendor: LogiSense, Trigger: Scheduled,
			Description:  "A set number of days after an invoice was delivered (deliveredAt), at a set time of day.",
			On:           On{EntityTypes: []string{"Invoice"}},
			Notification: Notification{Name: "InvoiceDeliveryPlusDays", State: "elapsed"},
			Parameters: []Parameter{
				{Name: "days", Type: Integer, Minimum: ptr(1), Description: "Days after delivery (x)."},
				{Name: "at", Type: String, Default: "09:00", Pattern: `^([01][0-9]|2[0-3]):[0-5][0-9]$`, Description: "Time of day (t), HH:MM in UTC."},
			},
		},
		{
			Name: "Refund", Title: "Refund", Vendor: LogiSense, Trigger: Change,
			Description:  "A refund to an account is processed: it is created processed, or its status becomes processed.",
			On:           On{EntityTypes: []string{"Refund"}, Operations: []string{"CREATE", "UPDATE"}},
			Notification: Notification{Name: "Refund", State: "processed"},
			build:        statusBecomes("processed"),
		},
		{
			Name: "CreditProcessed", Title: "Credit Processed", Vendor: LogiSense, Trigger: Change,
			Description:  "A credit to an account is processed: it is created processed, or its status becomes processed.",
			On:           On{EntityTypes: []string{"Credit"}, Operations: []string{"CREATE", "UPDATE"}},
			Notification: Notification{Name: "CreditProcessed", State: "processed"},
			build:        statusBecomes("processed"),
		},
		{
			Name: "ContractUnderCommit", Title: "Contract Under Commit", Vendor: LogiSense, Trigger: Change,
			Description: "A commitment tier of a contract closes (its period ended, its usage is final) with less used than committed. " +
				"The notification lists each such tier with its commitment, usage and shortfall.",
			On:           On{EntityTypes: []string{"Contract"}, Operations: []string{"CREATE", "UPDATE"}},
			Notification: Notification{Name: "ContractUnderCommit", State: "underCommit", Fields: []string{"tiers"}},
			Parameters: []Parameter{
				{Name: "tier", Type: String, Default: "", Description: "Only this commitment tier, by name; empty for every tier."},
			},
			build: func(v Values) parts {
				// Tiers are keyed by name, so a tier's previous state is a
				// lookup: the cost grows with the tiers, not their square.
				under := "new.commitTiers[k].closed == true && new.commitTiers[k].usedAmount < new.commitTiers[k].commitAmount" +
					" && !(old != null && k in old.commitTiers && old.commitTiers[k].closed == true)"
				if tier := v.String("tier"); tier != "" {
					under = "k == " + celString(tier) + " && " + under
				}
				return parts{
					when: "new.commitTiers.exists(k, " + under + ")",
					fields: map[string]string{"tiers": "new.commitTiers.filter(k, " + under + ").map(k, " +
						`{"tier": k, "commitAmount": new.commitTiers[k].commitAmount, "usedAmount": new.commitTiers[k].usedAmount,` +
						` "shortfall": new.commitTiers[k].commitAmount - new.commitTiers[k].usedAmount})`},
				}
			},
		},
		{
			Name: "DormantSim", Title: "Dormant SIM", Vendor: LogiSense, Trigger: Scheduled,
			Description:  "An active SIM has had no usage (lastActivityAt) for a set number of days.",
			On:           On{EntityTypes: []string{"Sim"}},
			Notification: Notification{Name: "DormantSim", State: "dormant"},
			Parameters: []Parameter{
				{Name: "days", Type: Integer, Default: int64(30), Minimum: ptr(1), Description: "Days without usage after which a SIM is dormant."},
			},
		},
		{
			Name: "PackageCancellation", Title: "Package Cancellation", Vendor: LogiSense, Trigger: Change,
			Description:  "A package's status becomes cancelled.",
			On:           On{EntityTypes: []string{"Package"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "PackageCancellation", State: "cancelled"},
			build:        statusBecomes("cancelled"),
		},
		{
			Name: "UsageThresholdExceeded", Title: "Usage Threshold Exceeded", Vendor: LogiSense, Trigger: Change,
			Description:  "A usage bucket (a Balance) is used up: its remaining amount reaches zero.",
			On:           On{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "UsageThresholdExceeded", State: "exceeded"},
			build: func(Values) parts {
				return parts{when: "new.remaining <= 0 && old.remaining > 0"}
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

// becomesSet fires when a timestamp field gets a value, or the entity is
// created with one.
func becomesSet(field string) func(Values) parts {
	return func(Values) parts { return parts{when: "new." + field + " != null && old." + field + " == null"} }
}
