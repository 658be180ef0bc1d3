package catalog

import "fmt"

// totogi returns Totogi's ten OCS notifications, with Totogi's names,
// states and notification fields.
func totogi() []*Entry {
	return []*Entry{
		{
			Name: "PlanExpiryWarning", Title: "Plan Expiry Warning", Vendor: Totogi, Trigger: Scheduled,
			Description: "A set number of hours or days before a plan's end date (expiresAt). " +
				"Not for plans that renew automatically, nor for a plan that ends because it is upgraded to a new version (upgradedTo).",
			On:           On{EntityTypes: []string{"Plan"}},
			Notification: Notification{Name: "PlanExpiryWarning", State: "warning"},
			Parameters: []Parameter{
				{Name: "before", Type: Integer, Minimum: ptr(1), Description: "How long before the end date to warn, in units of unit."},
				{Name: "unit", Type: String, Default: "days", Enum: []string{"hours", "days"}, Description: "The unit of before."},
			},
		},
		{
			Name: "PlanExpired", Title: "Plan Expired", Vendor: Totogi, Trigger: Change,
			Description:  "A plan's status becomes expired. Not for plans that renew automatically (autoRenew).",
			On:           On{EntityTypes: []string{"Plan"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "PlanExpired", State: "expired"},
			build: func(Values) parts {
				return parts{when: `old.status != "expired" && new.status == "expired" && new.autoRenew != true`}
			},
		},
		{
			Name: "PlanCancelled", Title: "Plan Canceled", Vendor: Totogi, Trigger: Change,
			Description: "A plan is removed from its account: its status becomes cancelled, or it is deleted before it ended. " +
				"Not when it is removed for an upgrade to a new version (upgradedTo is set).",
			On:           On{EntityTypes: []string{"Plan"}, Operations: []string{"UPDATE", "DELETE"}},
			Notification: Notification{Name: "PlanCancelled", State: "cancelled"},
			build: func(Values) parts {
				return parts{when: `event.operation == "DELETE"` +
					` ? old.status != "cancelled" && old.status != "expired" && old.upgradedTo == null` +
					` : old.status != "cancelled" && new.status == "cancelled" && new.upgradedTo == null`}
			},
		},
		{
			Name: "PlanRollover", Title: "Plan Rollover", Vendor: Totogi, Trigger: Change,
			Description: "Unused allowances of a plan are rolled over into a new period (rolledOverAt changes). " +
				"The notification carries what was rolled over, by unit, and how long it stays valid.",
			On:           On{EntityTypes: []string{"Plan"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "PlanRollover", State: "rolloverOccured", Fields: []string{"rolloveramount", "rollovergraceperiod"}},
			build: func(Values) parts {
				return parts{
					when:   `new.rolledOverAt != null && new.rolledOverAt != old.rolledOverAt`,
					fields: map[string]string{"rolloveramount": "new.rolloverAmount", "rollovergraceperiod": "new.rolloverGracePeriod"},
				}
			},
		},
		{
			Name: "OutOfCredit", Title: "Service Provider Credit Limit", Vendor: Totogi, Trigger: Change,
			Description: "An account's main currency balance reaches the service provider's credit limit: " +
				"it falls to minus creditLimit (to zero with the default).",
			On:           On{EntityTypes: []string{"Account"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "OutOfCredit", State: "outOfCredit"},
			Parameters: []Parameter{
				{Name: "creditLimit", Type: Number, Default: 0.0, Minimum: ptr(0),
					Description: "The credit the service provider extends, in the main currency: how far below zero the balance may go."},
			},
			build: func(v Values) parts { return balanceReaches(-v.Number("creditLimit")) },
		},
		{
			Name: "AccountCreditWarning", Title: "Account Credit Limit", Vendor: Totogi, Trigger: Change,
			Description: "An account's main currency balance reaches the credit limit the account set for itself: " +
				"it falls to minus accountCreditLimit. The account's limit may not be above the service provider's.",
			On:           On{EntityTypes: []string{"Account"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "AccountCreditWarning", State: "warning"},
			Parameters: []Parameter{
				{Name: "accountCreditLimit", Type: Number, Minimum: ptr(0),
					Description: "The credit the account allows itself, in the main currency; at most serviceProviderCreditLimit."},
				{Name: "serviceProviderCreditLimit", Type: Number, Default: 0.0, Minimum: ptr(0),
					Description: "The credit the service provider extends to the account (OutOfCredit's creditLimit)."},
			},
			check: func(v Values) error {
				if a, sp := v.Number("accountCreditLimit"), v.Number("serviceProviderCreditLimit"); a > sp {
					return &ParameterError{Parameter: "accountCreditLimit",
						Message: fmt.Sprintf("must not be above the service provider credit limit (serviceProviderCreditLimit, %s)", formatNumber(sp))}
				}
				return nil
			},
			build: func(v Values) parts { return balanceReaches(-v.Number("accountCreditLimit")) },
		},
		{
			Name: "AutoRenewSuccess", Title: "Auto-renew Success", Vendor: Totogi, Trigger: Change,
			Description:  "A plan that renews automatically has renewed (renewedAt changes); for prepaid, the fee has been taken from the balance.",
			On:           On{EntityTypes: []string{"Plan"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "AutoRenewSuccess", State: "renewSuccess"},
			build: func(Values) parts {
				return parts{when: `new.autoRenew == true && new.renewedAt != null && new.renewedAt != old.renewedAt`}
			},
		},
		{
			Name: "AutoRenewFailure", Title: "Auto-renew Failure", Vendor: Totogi, Trigger: Change,
			Description: "A plan that renews automatically could not renew. Renewal is retried until the plan's grace period ends, " +
				"and every failed attempt (renewalFailures goes up) notifies again.",
			On:           On{EntityTypes: []string{"Plan"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "AutoRenewFailure", State: "renewFailure"},
			build: func(Values) parts {
				return parts{when: `new.autoRenew == true && new.renewalFailures != null && new.renewalFailures > 0` +
					` && (old.renewalFailures == null || new.renewalFailures > old.renewalFailures)` +
					` && (new.renewalGraceEndsAt == null || event.occurredAt <= new.renewalGraceEndsAt)`}
			},
		},
		{
			Name: "UnitAllowanceThreshold", Title: "Allowance Threshold", Vendor: Totogi, Trigger: Change,
			Description: "An allowance balance (MB, minutes, texts) falls below a percentage of its total. " +
				"It notifies once per crossing, and again only after the allowance has gone back above.",
			On:           On{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "UnitAllowanceThreshold", State: "low"},
			Parameters: []Parameter{
				{Name: "thresholdPercent", Type: Number, ExclusiveMinimum: ptr(0), Maximum: ptr(100),
					Description: "The remaining allowance, as a percent of the total, below which the notification fires."},
			},
			build: func(v Values) parts { return percentCrosses("crossedBelow", "remaining", v.Number("thresholdPercent")) },
		},
		{
			Name: "NewPlanActivated", Title: "New Plan Activated", Vendor: Totogi, Trigger: Change,
			Description: "A new plan is provisioned to a subscriber and active: created active, or pending then active. " +
				"The notification carries the plan's id.",
			On:           On{EntityTypes: []string{"Plan"}, Operations: []string{"CREATE", "UPDATE"}},
			Notification: Notification{Name: "NewPlanActivated", State: "active", Fields: []string{"planid"}},
			build: func(Values) parts {
				return parts{
					when:   `new.status == "active" && (old == null || old.status == "pending")`,
					fields: map[string]string{"planid": "new.id"},
				}
			},
		},
	}
}

// balanceReaches fires when an account's main currency balance falls to
// limit or below, once per crossing.
func balanceReaches(limit float64) parts {
	l := formatNumber(limit)
	return parts{
		when:      "new.balance != null && new.balance <= " + l + " && (old.balance == null || old.balance > " + l + ")",
		threshold: ptr(limit),
	}
}

// percentCrosses fires when a Balance's field, as a percent of its total,
// crosses percent in the direction crossing (crossedBelow or crossedAbove)
// names, once per crossing.
func percentCrosses(crossing, field string, percent float64) parts {
	return parts{
		when:      fmt.Sprintf("%s(pct(old.%s, old.total), pct(new.%s, new.total), %s)", crossing, field, field, formatNumber(percent)),
		threshold: ptr(percent),
	}
}
