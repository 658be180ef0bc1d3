package catalog

import "fmt"

// ok is the state of a threshold counter that has not been crossed: the
// previous state of a threshold notification.
const ok = "ok"

// totogi returns Totogi's ten OCS notifications, with Totogi's names,
// states and notification fields.
func totogi() []*Entry {
	return []*Entry{
		{
			Name: "PlanExpiryWarning", Title: "Plan Expiry Warning", Vendor: Totogi, Trigger: Scheduled,
			Description: "A set number of hours or days before a plan's end date (expiresAt), once per end date: " +
				"a plan whose end date moves is warned before its new end instead, and a plan created or changed " +
				"inside the warning window is warned at once. Judged on the plan as it is when the warning is due.",
			On:           On{EntityTypes: []string{"Plan"}},
			Notification: Notification{Name: "PlanExpiryWarning", State: "warning"},
			Parameters: []Parameter{
				{Name: "before", Type: Integer, Minimum: ptr(1), Description: "How long before the end date to warn, in units of unit."},
				{Name: "unit", Type: String, Default: "days", Enum: []string{"hours", "days"}, Description: "The unit of before."},
			},
			Exclusions: []string{"plans that renew automatically (autoRenew)", "an end for an upgrade to a new version (upgradedTo)",
				"a plan expired or cancelled by then", "a plan without an end date"},
			build: func(v Values) parts {
				hours := v.Int("before")
				if v.String("unit") == "days" {
					hours *= 24
				}
				ends := `new.autoRenew != true && new.upgradedTo == null`
				return parts{
					at:   fmt.Sprintf(`%s ? new.expiresAt - duration("%dh") : null`, ends, hours),
					when: ends + ` && new.expiresAt != null && !(new.status in ["expired", "cancelled"])`,
				}
			},
		},
		{
			Name: "PlanExpired", Title: "Plan Expired", Vendor: Totogi, Trigger: Change,
			Description:  "A plan's status becomes expired. The previous state is the plan's status before (active, suspended, depleted, …).",
			On:           On{EntityTypes: []string{"Plan"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "PlanExpired", State: "expired"},
			Exclusions:   []string{"plans that renew automatically (autoRenew)", "a plan already expired"},
			build: func(Values) parts {
				return parts{
					when:          `old.status != "expired" && new.status == "expired" && new.autoRenew != true`,
					prevStateExpr: "old.status",
				}
			},
		},
		{
			Name: "PlanCancelled", Title: "Plan Canceled", Vendor: Totogi, Trigger: Change,
			Description: "A plan is removed from its account: its status becomes cancelled, or it is deleted before it ended. " +
				"The previous state is the plan's status before.",
			On:           On{EntityTypes: []string{"Plan"}, Operations: []string{"UPDATE", "DELETE"}},
			Notification: Notification{Name: "PlanCancelled", State: "cancelled"},
			Exclusions: []string{"a removal for an upgrade to a new version (upgradedTo)",
				"a plan that had already ended (cancelled, expired or depleted)"},
			build: func(Values) parts {
				live := `!(old.status in ["cancelled", "expired", "depleted"])`
				return parts{
					when: live + ` && (event.operation == "DELETE" ? old.upgradedTo == null` +
						` : new.status == "cancelled" && new.upgradedTo == null)`,
					prevStateExpr: "old.status",
				}
			},
		},
		{
			Name: "PlanRollover", Title: "Plan Rollover", Vendor: Totogi, Trigger: Change,
			Description: "Unused allowances of a plan are rolled over into a new period (rolledOverAt changes and something rolled over). " +
				"The notification carries what was rolled over, by unit, and how long it stays valid; " +
				"the previous state is rolloverOccured when the plan had rolled over before.",
			On:           On{EntityTypes: []string{"Plan"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "PlanRollover", State: "rolloverOccured", Fields: []string{"rolloveramount", "rollovergraceperiod"}},
			Exclusions:   []string{"a rollover that carried nothing over (rolloverAmount empty or all zero)"},
			build: func(Values) parts {
				return parts{
					when: `new.rolledOverAt != null && new.rolledOverAt != old.rolledOverAt` +
						` && new.rolloverAmount != null && new.rolloverAmount.exists(u, new.rolloverAmount[u] > 0.0)`,
					fields:        map[string]string{"rolloveramount": "new.rolloverAmount", "rollovergraceperiod": "new.rolloverGracePeriod"},
					prevStateExpr: `old.rolledOverAt != null ? "rolloverOccured" : ""`,
				}
			},
		},
		{
			Name: "OutOfCredit", Title: "Service Provider Credit Limit", Vendor: Totogi, Trigger: Change,
			Description: "An account's main currency balance reaches the service provider's credit limit: it falls to minus the account's " +
				"creditLimit, or minus the parameter creditLimit for an account without one (to zero with the default). " +
				"The threshold is that balance; the previous state is ok.",
			On:           On{EntityTypes: []string{"Account"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "OutOfCredit", State: "outOfCredit"},
			Parameters: []Parameter{
				{Name: "creditLimit", Type: Number, Default: 0.0, Minimum: ptr(0),
					Description: "The credit the service provider extends to an account without a creditLimit of its own, " +
						"in the main currency: how far below zero its balance may go."},
			},
			Exclusions: []string{"a balance already at or below the limit", "an account without a balance"},
			build: func(v Values) parts {
				limit := func(img string) string { return orParam(img+".creditLimit", v.Number("creditLimit")) }
				return balanceReaches(limit)
			},
		},
		{
			Name: "AccountCreditWarning", Title: "Account Credit Limit", Vendor: Totogi, Trigger: Change,
			Description: "An account's main currency balance reaches the credit limit the account set for itself: it falls to minus " +
				"the account's accountCreditLimit (the parameter for an account without one), capped at the service provider's " +
				"limit in force (the account's creditLimit, else the parameter). The threshold is that balance; the previous state is ok.",
			On:           On{EntityTypes: []string{"Account"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "AccountCreditWarning", State: "warning"},
			Parameters: []Parameter{
				{Name: "accountCreditLimit", Type: Number, Minimum: ptr(0),
					Description: "The credit an account without an accountCreditLimit of its own allows itself, in the main currency."},
				{Name: "serviceProviderCreditLimit", Type: Number, Default: 0.0, Minimum: ptr(0),
					Description: "The credit the service provider extends to an account without a creditLimit of its own " +
						"(OutOfCredit's creditLimit); an account's limit above it counts as it."},
			},
			Exclusions: []string{"a balance already at or below the limit", "an account without a balance"},
			check: func(v Values, given map[string]any) error {
				// Only a service provider limit the installer gave is in
				// force for every account that lacks its own; its default
				// would refuse any account limit.
				if given["serviceProviderCreditLimit"] == nil {
					return nil
				}
				if a, sp := v.Number("accountCreditLimit"), v.Number("serviceProviderCreditLimit"); a > sp {
					return &ParameterError{Parameter: "accountCreditLimit",
						Message: fmt.Sprintf("must not be above the service provider credit limit (serviceProviderCreditLimit, %s)", formatNumber(sp))}
				}
				return nil
			},
			build: func(v Values) parts {
				limit := func(img string) string {
					a := orParam(img+".accountCreditLimit", v.Number("accountCreditLimit"))
					sp := orParam(img+".creditLimit", v.Number("serviceProviderCreditLimit"))
					return "(" + a + " < " + sp + " ? " + a + " : " + sp + ")"
				}
				return balanceReaches(limit)
			},
		},
		{
			Name: "AutoRenewSuccess", Title: "Auto-renew Success", Vendor: Totogi, Trigger: Change,
			Description: "A plan that renews automatically has renewed (renewedAt changes); for prepaid, the fee has been taken from the balance. " +
				"The previous state is the last renewal's outcome: renewFailure after failed attempts, renewSuccess after an earlier renewal.",
			On:           On{EntityTypes: []string{"Plan"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "AutoRenewSuccess", State: "renewSuccess"},
			Exclusions:   []string{"plans that do not renew automatically (renewed by hand)"},
			build: func(Values) parts {
				return parts{
					when:          `new.autoRenew == true && new.renewedAt != null && new.renewedAt != old.renewedAt`,
					prevStateExpr: lastRenewal,
				}
			},
		},
		{
			Name: "AutoRenewFailure", Title: "Auto-renew Failure", Vendor: Totogi, Trigger: Change,
			Description: "A plan that renews automatically could not renew. Renewal is retried until the plan's grace period ends, " +
				"and every event that reports more failed attempts (renewalFailures goes up) notifies once, " +
				"with failedattempts saying how many it reports. The previous state is the last renewal's outcome.",
			On:           On{EntityTypes: []string{"Plan"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "AutoRenewFailure", State: "renewFailure", Fields: []string{"failedattempts"}},
			Exclusions:   []string{"plans that do not renew automatically", "a failure after the grace period ended (renewalGraceEndsAt)"},
			build: func(Values) parts {
				return parts{
					when: `new.autoRenew == true && new.renewalFailures != null && new.renewalFailures > 0` +
						` && (old.renewalFailures == null || new.renewalFailures > old.renewalFailures)` +
						` && (new.renewalGraceEndsAt == null || event.occurredAt <= new.renewalGraceEndsAt)`,
					fields: map[string]string{
						"failedattempts": "new.renewalFailures - (old.renewalFailures == null ? 0 : old.renewalFailures)",
					},
					prevStateExpr: lastRenewal,
				}
			},
		},
		{
			Name: "UnitAllowanceThreshold", Title: "Allowance Threshold", Vendor: Totogi, Trigger: Change,
			Description: "An allowance (a Balance of kind allowance: MB, minutes, texts) falls below a percentage of its total. " +
				"It notifies once per crossing, and again only after the allowance has gone back to the percentage or above; " +
				"the previous state is ok.",
			On:           On{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "UnitAllowanceThreshold", State: "low"},
			Parameters: []Parameter{
				{Name: "thresholdPercent", Type: Number, ExclusiveMinimum: ptr(0), Maximum: ptr(100),
					Description: "The remaining allowance, as a percent of the total, below which the notification fires."},
			},
			Exclusions: []string{"monetary balances, and balances whose kind is not given", "an allowance already below"},
			build: func(v Values) parts {
				p := percentCrosses("crossedBelow", "remaining", v.Number("thresholdPercent"))
				p.prevState = ok
				return p
			},
		},
		{
			Name: "NewPlanActivated", Title: "New Plan Activated", Vendor: Totogi, Trigger: Change,
			Description: "A new plan is provisioned to a subscriber and active: created active, or pending then active. " +
				"The notification carries the plan's id; the previous state is pending when it was.",
			On:           On{EntityTypes: []string{"Plan"}, Operations: []string{"CREATE", "UPDATE"}},
			Notification: Notification{Name: "NewPlanActivated", State: "active", Fields: []string{"planid"}},
			Exclusions:   []string{"a plan created pending, until it is active", "a suspended plan reactivated"},
			build: func(Values) parts {
				return parts{
					when:          `new.status == "active" && (old == null || old.status == "pending")`,
					fields:        map[string]string{"planid": "new.id"},
					prevStateExpr: "old.status",
				}
			},
		},
	}
}

// lastRenewal is the outcome of a plan's last renewal before the event:
// renewFailure while attempts are failing, renewSuccess once it renewed,
// none before its first renewal.
const lastRenewal = `old.renewalFailures != null && old.renewalFailures > 0 ? "renewFailure"` +
	` : old.renewedAt != null ? "renewSuccess" : ""`

// orParam is field where it is set, else the parameter's value.
func orParam(field string, param float64) string {
	return "(" + field + " != null ? " + field + " : " + celDouble(param) + ")"
}

// balanceReaches fires when an account's main currency balance falls to
// minus the credit limit in force or below, once per crossing; limit
// writes the limit in force for an image (old or new).
func balanceReaches(limit func(img string) string) parts {
	return parts{
		when: "new.balance != null && new.balance <= 0.0 - " + limit("new") +
			" && (old.balance == null || old.balance > 0.0 - " + limit("old") + ")",
		prevState:     ok,
		thresholdExpr: "0.0 - " + limit("new"),
	}
}

// percentCrosses fires when an allowance's field, as a percent of its
// total, crosses percent in the direction crossing (crossedBelow or
// crossedAbove) names, once per crossing.
func percentCrosses(crossing, field string, percent float64) parts {
	return parts{
		when: fmt.Sprintf(`new.kind == "allowance" && %s(pct(old.%s, old.total), pct(new.%s, new.total), %s)`,
			crossing, field, field, formatNumber(percent)),
		threshold: ptr(percent),
	}
}
