package catalog_test

import (
	"testing"
	"time"
)

func TestTotogiNotificationsFireAsTotogiSays(t *testing.T) {
	loadBuiltin(t).run(t, totogiCases())
}

func totogiCases() []entryCases {
	// bare holds only what the Plan schema requires.
	bare := map[string]any{"id": "plan-1", "accountId": "acc-9", "name": "Unlimited 5G", "status": "active"}
	plan := with(bare, "autoRenew", false)
	renewing := with(plan, "autoRenew", true)
	upgrading := with(plan, "upgradedTo", "plan-1-v2")
	day := 24 * time.Hour

	// account holds only what the Account schema requires, and balance
	// adds a main currency balance.
	account := map[string]any{"id": "acc-1", "status": "active"}
	balance := func(v any, kv ...any) map[string]any {
		return with(with(account, "currency", "USD", "balance", v), kv...)
	}

	allowance := func(remaining float64) map[string]any {
		return map[string]any{"id": "bal-1", "accountId": "acc-1", "unit": "MB", "kind": "allowance",
			"total": 1000.0, "used": 1000 - remaining, "remaining": remaining, "planId": "plan-7"}
	}
	money := func(remaining float64) map[string]any {
		return with(allowance(remaining), "unit", "USD", "kind", "monetary", "planId", nil)
	}
	unkinded := func(remaining float64) map[string]any { return with(allowance(remaining), "kind", nil, "planId", nil) }

	return []entryCases{
		{entry: "PlanExpired", cases: []sample{
			{name: "a plan that does not renew expires", op: "UPDATE", old: plan, new: with(plan, "status", "expired"), fire: true, prev: "active"},
			{name: "a depleted plan expires", op: "UPDATE", old: with(plan, "status", "depleted"), new: with(plan, "status", "expired"), fire: true, prev: "depleted"},
			{name: "a plan with only its required fields expires", op: "UPDATE", old: bare, new: with(bare, "status", "expired"),
				sparse: true, fire: true, prev: "active"},
			{name: "written by a producer still on Plan v1", op: "UPDATE", old: plan, new: with(plan, "status", "expired"), writer: 1, fire: true, prev: "active"},
			{name: "an auto-renewing plan expires", op: "UPDATE", old: renewing, new: with(renewing, "status", "expired"),
				excludes: "plans that renew automatically (autoRenew)"},
			{name: "an expired plan changes again", op: "UPDATE", old: with(plan, "status", "expired"), new: with(plan, "status", "expired", "name", "Old 5G"),
				excludes: "a plan already expired"},
			{name: "a plan is cancelled", op: "UPDATE", old: plan, new: with(plan, "status", "cancelled")},
			{name: "a plan is created expired", op: "CREATE", new: with(plan, "status", "expired"), unwatched: true, whenHolds: true},
			{name: "an expired plan is deleted", op: "DELETE", old: with(plan, "status", "expired"), unwatched: true},
		}},
		{entry: "PlanCancelled", cases: []sample{
			{name: "its status becomes cancelled", op: "UPDATE", old: plan, new: with(plan, "status", "cancelled"), fire: true, prev: "active"},
			{name: "an active plan is removed", op: "DELETE", old: plan, fire: true, prev: "active"},
			{name: "a suspended plan is removed", op: "DELETE", old: with(plan, "status", "suspended"), fire: true, prev: "suspended"},
			{name: "a plan with only its required fields is removed", op: "DELETE", old: bare, sparse: true, fire: true, prev: "active"},
			{name: "cancelled for an upgrade to a new version", op: "UPDATE", old: upgrading, new: with(upgrading, "status", "cancelled"),
				excludes: "a removal for an upgrade to a new version (upgradedTo)"},
			{name: "removed for an upgrade to a new version", op: "DELETE", old: upgrading,
				excludes: "a removal for an upgrade to a new version (upgradedTo)"},
			{name: "a cancelled plan is removed", op: "DELETE", old: with(plan, "status", "cancelled"),
				excludes: "a plan that had already ended (cancelled, expired or depleted)"},
			{name: "an expired plan is removed", op: "DELETE", old: with(plan, "status", "expired"),
				excludes: "a plan that had already ended (cancelled, expired or depleted)"},
			{name: "a depleted plan is removed", op: "DELETE", old: with(plan, "status", "depleted"),
				excludes: "a plan that had already ended (cancelled, expired or depleted)"},
			{name: "a depleted plan is cancelled", op: "UPDATE", old: with(plan, "status", "depleted"), new: with(plan, "status", "cancelled"),
				excludes: "a plan that had already ended (cancelled, expired or depleted)"},
			{name: "a plan expires", op: "UPDATE", old: plan, new: with(plan, "status", "expired")},
			{name: "a plan is created cancelled", op: "CREATE", new: with(plan, "status", "cancelled"), unwatched: true, whenHolds: true},
		}},
		{entry: "PlanRollover", cases: []sample{
			{name: "the first rollover", op: "UPDATE", old: plan,
				new:  with(plan, "rolledOverAt", t0, "rolloverAmount", map[string]any{"MB": 512.0, "SMS": 20.0}, "rolloverGracePeriod", "P30D"),
				fire: true, fields: map[string]any{"rolloveramount": map[string]any{"MB": 512, "SMS": 20}, "rollovergraceperiod": "P30D"}},
			{name: "the next period's rollover", op: "UPDATE",
				old:  with(plan, "rolledOverAt", t0, "rolloverAmount", map[string]any{"MB": 512.0}),
				new:  with(plan, "rolledOverAt", t0.Add(30*day), "rolloverAmount", map[string]any{"MB": 128.0}),
				fire: true, prev: "rolloverOccured", fields: map[string]any{"rolloveramount": map[string]any{"MB": 128}, "rollovergraceperiod": nil}},
			{name: "a rollover of one unit, another at zero", op: "UPDATE", old: plan,
				new:  with(plan, "rolledOverAt", t0, "rolloverAmount", map[string]any{"MB": 0.0, "SMS": 5.0}),
				fire: true, fields: map[string]any{"rolloveramount": map[string]any{"MB": 0, "SMS": 5}, "rollovergraceperiod": nil}},
			{name: "a new period with nothing rolled over", op: "UPDATE", old: plan, new: with(plan, "rolledOverAt", t0),
				excludes: "a rollover that carried nothing over (rolloverAmount empty or all zero)"},
			{name: "a new period where every unit rolled over zero", op: "UPDATE", old: plan,
				new:      with(plan, "rolledOverAt", t0, "rolloverAmount", map[string]any{"MB": 0.0}),
				excludes: "a rollover that carried nothing over (rolloverAmount empty or all zero)"},
			{name: "another change after a rollover", op: "UPDATE",
				old: with(plan, "rolledOverAt", t0, "rolloverAmount", map[string]any{"MB": 1.0}),
				new: with(plan, "rolledOverAt", t0, "rolloverAmount", map[string]any{"MB": 1.0}, "name", "Unlimited 5G+")},
			{name: "a plan with only its required fields changes", op: "UPDATE", old: bare, new: with(bare, "status", "suspended"), sparse: true},
			{name: "written by a producer still on Plan v1", op: "UPDATE", old: plan, new: with(plan, "name", "x"), writer: 1},
			{name: "a rolled-over plan is created", op: "CREATE", new: with(plan, "rolledOverAt", t0, "rolloverAmount", map[string]any{"MB": 1.0}),
				unwatched: true, whenHolds: true},
		}},
		{entry: "OutOfCredit", cases: []sample{
			{name: "the balance reaches zero", op: "UPDATE", old: balance(5.0), new: balance(0.0), edge: true, fire: true, prev: "ok", threshold: num(0)},
			{name: "a charge takes the balance below zero", op: "UPDATE", old: balance(5.0), new: balance(-2.0), fire: true, prev: "ok", threshold: num(0)},
			{name: "the first balance reported is zero", op: "UPDATE", old: account, new: balance(0.0), fire: true, prev: "ok", threshold: num(0)},
			{name: "the account's own limit: it reaches minus 50", op: "UPDATE",
				old: balance(-40.0, "creditLimit", 50.0), new: balance(-50.0, "creditLimit", 50.0), edge: true, fire: true, prev: "ok", threshold: num(-50)},
			{name: "the account's own limit: zero is within its credit", op: "UPDATE",
				old: balance(5.0, "creditLimit", 50.0), new: balance(0.0, "creditLimit", 50.0)},
			{name: "the balance was already out", op: "UPDATE", old: balance(0.0), new: balance(-1.0),
				excludes: "a balance already at or below the limit"},
			{name: "the balance falls but stays above", op: "UPDATE", old: balance(10.0), new: balance(5.0)},
			{name: "a top-up", op: "UPDATE", old: balance(0.0), new: balance(20.0)},
			{name: "no balance reported", op: "UPDATE", old: balance(5.0), new: account, excludes: "an account without a balance"},
			{name: "an account with only its required fields changes", op: "UPDATE", old: account, new: with(account, "status", "suspended"),
				sparse: true, excludes: "an account without a balance"},
			{name: "an account is created at zero", op: "CREATE", new: balance(0.0), unwatched: true, whenHolds: true},
		}},
		{entry: "OutOfCredit", params: map[string]any{"creditLimit": 50}, cases: []sample{
			{name: "the balance reaches minus the credit limit", op: "UPDATE", old: balance(-40.0), new: balance(-50.0),
				edge: true, fire: true, prev: "ok", threshold: num(-50)},
			{name: "the balance reaches zero with credit left", op: "UPDATE", old: balance(5.0), new: balance(0.0)},
			{name: "the balance goes into credit", op: "UPDATE", old: balance(5.0), new: balance(-10.0)},
			{name: "the account's own limit of 10 wins", op: "UPDATE",
				old: balance(0.0, "creditLimit", 10.0), new: balance(-10.0, "creditLimit", 10.0), fire: true, prev: "ok", threshold: num(-10)},
			{name: "the account's own limit of 0 wins", op: "UPDATE",
				old: balance(5.0, "creditLimit", 0.0), new: balance(0.0, "creditLimit", 0.0), fire: true, prev: "ok", threshold: num(0)},
			{name: "an account is deleted", op: "DELETE", old: balance(-60.0), unwatched: true},
		}},
		{entry: "AccountCreditWarning", params: map[string]any{"accountCreditLimit": 20, "serviceProviderCreditLimit": 50}, cases: []sample{
			{name: "the balance reaches the account's limit", op: "UPDATE", old: balance(0.0), new: balance(-20.0),
				edge: true, fire: true, prev: "ok", threshold: num(-20)},
			{name: "a charge takes it past the limit", op: "UPDATE", old: balance(-10.0), new: balance(-25.0), fire: true, prev: "ok", threshold: num(-20)},
			{name: "the account's own accountCreditLimit wins", op: "UPDATE",
				old: balance(0.0, "accountCreditLimit", 5.0), new: balance(-5.0, "accountCreditLimit", 5.0), fire: true, prev: "ok", threshold: num(-5)},
			{name: "the account's creditLimit caps its limit", op: "UPDATE",
				old: balance(0.0, "creditLimit", 10.0), new: balance(-10.0, "creditLimit", 10.0), fire: true, prev: "ok", threshold: num(-10)},
			{name: "an own limit above the account's creditLimit counts as it", op: "UPDATE",
				old:  balance(0.0, "creditLimit", 10.0, "accountCreditLimit", 30.0),
				new:  balance(-10.0, "creditLimit", 10.0, "accountCreditLimit", 30.0),
				fire: true, prev: "ok", threshold: num(-10)},
			{name: "already past the account's limit", op: "UPDATE", old: balance(-25.0), new: balance(-30.0),
				excludes: "a balance already at or below the limit"},
			{name: "spending on credit within the limit", op: "UPDATE", old: balance(10.0), new: balance(-5.0)},
			{name: "no balance reported", op: "UPDATE", old: balance(-10.0), new: account, excludes: "an account without a balance"},
			{name: "an account with only its required fields changes", op: "UPDATE", old: account, new: with(account, "status", "suspended"),
				sparse: true, excludes: "an account without a balance"},
			{name: "an account is deleted", op: "DELETE", old: balance(-30.0), unwatched: true},
		}},
		{entry: "AccountCreditWarning", params: map[string]any{"accountCreditLimit": 20}, cases: []sample{
			{name: "an account whose creditLimit is 50", op: "UPDATE",
				old: balance(0.0, "creditLimit", 50.0), new: balance(-20.0, "creditLimit", 50.0), fire: true, prev: "ok", threshold: num(-20)},
			{name: "an account without a creditLimit has Totogi's default, 0", op: "UPDATE", old: balance(5.0), new: balance(0.0),
				edge: true, fire: true, prev: "ok", threshold: num(0)},
			{name: "an account without a creditLimit spends", op: "UPDATE", old: balance(10.0), new: balance(5.0)},
		}},
		{entry: "AutoRenewSuccess", cases: []sample{
			{name: "the first renewal", op: "UPDATE", old: renewing, new: with(renewing, "renewedAt", t0), fire: true},
			{name: "the next renewal", op: "UPDATE", old: with(renewing, "renewedAt", t0), new: with(renewing, "renewedAt", t0.Add(30*day)),
				fire: true, prev: "renewSuccess"},
			{name: "renewal after failed attempts", op: "UPDATE",
				old:  with(renewing, "renewedAt", t0, "renewalFailures", 2),
				new:  with(renewing, "renewedAt", t0.Add(31*day), "renewalFailures", 0),
				fire: true, prev: "renewFailure"},
			{name: "a plan that does not auto-renew is renewed by hand", op: "UPDATE", old: plan, new: with(plan, "renewedAt", t0),
				excludes: "plans that do not renew automatically (renewed by hand)"},
			{name: "another change after a renewal", op: "UPDATE", old: with(renewing, "renewedAt", t0), new: with(renewing, "renewedAt", t0, "name", "x")},
			{name: "a renewal fails", op: "UPDATE", old: renewing, new: with(renewing, "renewalFailures", 1)},
			{name: "a plan with only its required fields changes", op: "UPDATE", old: bare, new: with(bare, "name", "x"), sparse: true},
			{name: "a renewed plan is created", op: "CREATE", new: with(renewing, "renewedAt", t0), unwatched: true, whenHolds: true},
		}},
		{entry: "AutoRenewFailure", cases: []sample{
			{name: "the first attempt fails", op: "UPDATE", at: t0,
				old: renewing, new: with(renewing, "renewalFailures", 1, "renewalGraceEndsAt", t0.Add(3*day)),
				fire: true, fields: map[string]any{"failedattempts": 1}},
			{name: "a renewed plan's next renewal fails", op: "UPDATE", at: t0,
				old: with(renewing, "renewedAt", t0.Add(-30*day)), new: with(renewing, "renewedAt", t0.Add(-30*day), "renewalFailures", 1),
				fire: true, prev: "renewSuccess", fields: map[string]any{"failedattempts": 1}},
			{name: "a retry fails within the grace period", op: "UPDATE", at: t0.Add(day),
				old:  with(renewing, "renewalFailures", 1, "renewalGraceEndsAt", t0.Add(3*day)),
				new:  with(renewing, "renewalFailures", 2, "renewalGraceEndsAt", t0.Add(3*day)),
				fire: true, prev: "renewFailure", fields: map[string]any{"failedattempts": 1}},
			{name: "one event reports two failed attempts", op: "UPDATE", at: t0.Add(2 * day),
				old:  with(renewing, "renewalFailures", 1, "renewalGraceEndsAt", t0.Add(3*day)),
				new:  with(renewing, "renewalFailures", 3, "renewalGraceEndsAt", t0.Add(3*day)),
				fire: true, prev: "renewFailure", fields: map[string]any{"failedattempts": 2}},
			{name: "a retry fails as the grace period ends", op: "UPDATE", at: t0.Add(3 * day), edge: true,
				old:  with(renewing, "renewalFailures", 3, "renewalGraceEndsAt", t0.Add(3*day)),
				new:  with(renewing, "renewalFailures", 4, "renewalGraceEndsAt", t0.Add(3*day)),
				fire: true, prev: "renewFailure", fields: map[string]any{"failedattempts": 1}},
			{name: "a failure without a grace period", op: "UPDATE", old: renewing, new: with(renewing, "renewalFailures", 1),
				fire: true, fields: map[string]any{"failedattempts": 1}},
			{name: "a failure reported after the grace period ended", op: "UPDATE", at: t0.Add(3*day + time.Millisecond),
				old:      with(renewing, "renewalFailures", 3, "renewalGraceEndsAt", t0.Add(3*day)),
				new:      with(renewing, "renewalFailures", 4, "renewalGraceEndsAt", t0.Add(3*day)),
				excludes: "a failure after the grace period ended (renewalGraceEndsAt)"},
			{name: "the renewal succeeds and the count resets", op: "UPDATE",
				old: with(renewing, "renewalFailures", 3), new: with(renewing, "renewalFailures", 0, "renewedAt", t0)},
			{name: "another change while failing", op: "UPDATE",
				old: with(renewing, "renewalFailures", 2), new: with(renewing, "renewalFailures", 2, "name", "x")},
			{name: "a plan that does not auto-renew", op: "UPDATE", old: plan, new: with(plan, "renewalFailures", 1),
				excludes: "plans that do not renew automatically"},
			{name: "written by a producer still on Plan v1", op: "UPDATE", old: renewing, new: with(renewing, "name", "x"), writer: 1},
			{name: "a plan with only its required fields changes", op: "UPDATE", old: bare, new: with(bare, "name", "x"), sparse: true},
			{name: "a failing plan is deleted", op: "DELETE", old: with(renewing, "renewalFailures", 2), unwatched: true},
		}},
		{entry: "UnitAllowanceThreshold", params: map[string]any{"thresholdPercent": 20}, cases: []sample{
			{name: "the allowance falls below 20% of its total", op: "UPDATE", old: allowance(300), new: allowance(150),
				fire: true, prev: "ok", threshold: num(20)},
			{name: "it falls from exactly 20%", op: "UPDATE", old: allowance(200), new: allowance(199), edge: true,
				fire: true, prev: "ok", threshold: num(20)},
			{name: "it falls to exactly 20%, not below", op: "UPDATE", old: allowance(300), new: allowance(200), edge: true},
			{name: "a minutes allowance falls below", op: "UPDATE", old: with(allowance(300), "unit", "SECONDS"), new: with(allowance(100), "unit", "SECONDS"),
				fire: true, prev: "ok", threshold: num(20)},
			{name: "a USD balance falls to 10%", op: "UPDATE", old: money(300), new: money(100),
				excludes: "monetary balances, and balances whose kind is not given"},
			{name: "an MB balance that does not say its kind", op: "UPDATE", old: unkinded(300), new: unkinded(100), sparse: true,
				excludes: "monetary balances, and balances whose kind is not given"},
			{name: "written by a producer still on Balance v1", op: "UPDATE", old: unkinded(300), new: unkinded(100), writer: 1,
				excludes: "monetary balances, and balances whose kind is not given"},
			{name: "it was already below", op: "UPDATE", old: allowance(150), new: allowance(100), excludes: "an allowance already below"},
			{name: "it falls but stays above", op: "UPDATE", old: allowance(500), new: allowance(300)},
			{name: "a top-up takes it back above", op: "UPDATE", old: allowance(100), new: allowance(900)},
			{name: "after the top-up it falls below again", op: "UPDATE", old: allowance(900), new: allowance(100),
				fire: true, prev: "ok", threshold: num(20)},
			{name: "an allowance created low", op: "CREATE", new: allowance(100), unwatched: true, whenHolds: true},
		}},
		{entry: "NewPlanActivated", cases: []sample{
			{name: "a plan is provisioned active", op: "CREATE", new: plan, fire: true, fields: map[string]any{"planid": "plan-1"}},
			{name: "a plan with only its required fields is provisioned active", op: "CREATE", new: bare, sparse: true,
				fire: true, fields: map[string]any{"planid": "plan-1"}},
			{name: "a pending plan becomes active", op: "UPDATE", old: with(plan, "status", "pending"), new: plan,
				fire: true, prev: "pending", fields: map[string]any{"planid": "plan-1"}},
			{name: "a plan is provisioned pending", op: "CREATE", new: with(plan, "status", "pending"),
				excludes: "a plan created pending, until it is active"},
			{name: "a suspended plan is reactivated", op: "UPDATE", old: with(plan, "status", "suspended"), new: plan,
				excludes: "a suspended plan reactivated"},
			{name: "an active plan changes", op: "UPDATE", old: plan, new: with(plan, "name", "x")},
			{name: "an active plan is deleted", op: "DELETE", old: plan, unwatched: true},
		}},
	}
}
