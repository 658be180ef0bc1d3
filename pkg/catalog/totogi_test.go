package catalog_test

import (
	"testing"
	"time"
)

func TestTotogiNotificationsFireAsTotogiSays(t *testing.T) {
	loadBuiltin(t).run(t, totogiCases())
}

func totogiCases() []entryCases {
	plan := map[string]any{"id": "plan-1", "accountId": "acc-1", "name": "Unlimited 5G", "status": "active", "autoRenew": false}
	renewing := with(plan, "autoRenew", true)
	upgrading := with(plan, "upgradedTo", "plan-1-v2")
	day := 24 * time.Hour

	account := map[string]any{"id": "acc-1", "status": "active", "currency": "USD", "balance": 12.5}
	balance := func(v any) map[string]any { return with(account, "balance", v) }

	allowance := func(remaining float64) map[string]any {
		return map[string]any{"id": "bal-1", "accountId": "acc-1", "unit": "MB", "total": 1000.0, "used": 1000 - remaining, "remaining": remaining}
	}

	return []entryCases{
		{entry: "PlanExpired", cases: []sample{
			{name: "a plan that does not renew expires", op: "UPDATE", old: plan, new: with(plan, "status", "expired"), fire: true},
			{name: "written by a producer still on Plan v1", op: "UPDATE", old: plan, new: with(plan, "status", "expired"), writer: 1, fire: true},
			{name: "an auto-renewing plan expires", op: "UPDATE", old: renewing, new: with(renewing, "status", "expired")},
			{name: "an expired plan changes again", op: "UPDATE", old: with(plan, "status", "expired"), new: with(plan, "status", "expired", "name", "Old 5G")},
			{name: "a plan is cancelled", op: "UPDATE", old: plan, new: with(plan, "status", "cancelled")},
			{name: "a plan is created expired", op: "CREATE", new: with(plan, "status", "expired")},
		}},
		{entry: "PlanCancelled", cases: []sample{
			{name: "its status becomes cancelled", op: "UPDATE", old: plan, new: with(plan, "status", "cancelled"), fire: true},
			{name: "an active plan is removed", op: "DELETE", old: plan, fire: true},
			{name: "a suspended plan is removed", op: "DELETE", old: with(plan, "status", "suspended"), fire: true},
			{name: "cancelled for an upgrade to a new version", op: "UPDATE", old: upgrading, new: with(upgrading, "status", "cancelled")},
			{name: "removed for an upgrade to a new version", op: "DELETE", old: upgrading},
			{name: "a cancelled plan is removed", op: "DELETE", old: with(plan, "status", "cancelled")},
			{name: "an expired plan is removed", op: "DELETE", old: with(plan, "status", "expired")},
			{name: "a plan expires", op: "UPDATE", old: plan, new: with(plan, "status", "expired")},
		}},
		{entry: "PlanRollover", cases: []sample{
			{name: "the first rollover", op: "UPDATE", old: plan,
				new:  with(plan, "rolledOverAt", t0, "rolloverAmount", map[string]any{"MB": 512.0, "SMS": 20.0}, "rolloverGracePeriod", "P30D"),
				fire: true, fields: map[string]any{"rolloveramount": map[string]any{"MB": 512, "SMS": 20}, "rollovergraceperiod": "P30D"}},
			{name: "the next period's rollover", op: "UPDATE",
				old:  with(plan, "rolledOverAt", t0, "rolloverAmount", map[string]any{"MB": 512.0}),
				new:  with(plan, "rolledOverAt", t0.Add(30*day), "rolloverAmount", map[string]any{"MB": 128.0}),
				fire: true, fields: map[string]any{"rolloveramount": map[string]any{"MB": 128}, "rollovergraceperiod": nil}},
			{name: "another change after a rollover", op: "UPDATE",
				old: with(plan, "rolledOverAt", t0), new: with(plan, "rolledOverAt", t0, "name", "Unlimited 5G+")},
			{name: "a plan without rollovers changes", op: "UPDATE", old: plan, new: with(plan, "status", "suspended")},
		}},
		{entry: "OutOfCredit", cases: []sample{
			{name: "the balance reaches zero", op: "UPDATE", old: balance(5.0), new: balance(0.0), fire: true},
			{name: "a charge takes the balance below zero", op: "UPDATE", old: balance(5.0), new: balance(-2.0), fire: true},
			{name: "the first balance reported is zero", op: "UPDATE", old: balance(nil), new: balance(0.0), fire: true},
			{name: "the balance was already out", op: "UPDATE", old: balance(0.0), new: balance(-1.0)},
			{name: "the balance falls but stays above", op: "UPDATE", old: balance(10.0), new: balance(5.0)},
			{name: "a top-up", op: "UPDATE", old: balance(0.0), new: balance(20.0)},
			{name: "no balance reported", op: "UPDATE", old: balance(5.0), new: balance(nil)},
		}},
		{entry: "OutOfCredit", params: map[string]any{"creditLimit": 50}, cases: []sample{
			{name: "the balance reaches minus the credit limit", op: "UPDATE", old: balance(-40.0), new: balance(-50.0), fire: true},
			{name: "the balance reaches zero with credit left", op: "UPDATE", old: balance(5.0), new: balance(0.0)},
			{name: "the balance goes into credit", op: "UPDATE", old: balance(5.0), new: balance(-10.0)},
		}},
		{entry: "AccountCreditWarning", params: map[string]any{"accountCreditLimit": 20, "serviceProviderCreditLimit": 50}, cases: []sample{
			{name: "the balance reaches the account's own limit", op: "UPDATE", old: balance(0.0), new: balance(-20.0), fire: true},
			{name: "a charge takes it past the limit", op: "UPDATE", old: balance(-10.0), new: balance(-25.0), fire: true},
			{name: "already past the account's limit", op: "UPDATE", old: balance(-25.0), new: balance(-30.0)},
			{name: "spending on credit within the limit", op: "UPDATE", old: balance(10.0), new: balance(-5.0)},
		}},
		{entry: "AutoRenewSuccess", cases: []sample{
			{name: "the first renewal", op: "UPDATE", old: renewing, new: with(renewing, "renewedAt", t0), fire: true},
			{name: "the next renewal", op: "UPDATE", old: with(renewing, "renewedAt", t0), new: with(renewing, "renewedAt", t0.Add(30*day)), fire: true},
			{name: "renewal after failed attempts", op: "UPDATE",
				old: with(renewing, "renewedAt", t0, "renewalFailures", 2), new: with(renewing, "renewedAt", t0.Add(31*day), "renewalFailures", 0), fire: true},
			{name: "a plan that does not auto-renew is renewed by hand", op: "UPDATE", old: plan, new: with(plan, "renewedAt", t0)},
			{name: "another change after a renewal", op: "UPDATE", old: with(renewing, "renewedAt", t0), new: with(renewing, "renewedAt", t0, "name", "x")},
			{name: "a renewal fails", op: "UPDATE", old: renewing, new: with(renewing, "renewalFailures", 1)},
		}},
		{entry: "AutoRenewFailure", cases: []sample{
			{name: "the first attempt fails", op: "UPDATE", at: t0,
				old: renewing, new: with(renewing, "renewalFailures", 1, "renewalGraceEndsAt", t0.Add(3*day)), fire: true},
			{name: "a retry fails within the grace period", op: "UPDATE", at: t0.Add(day),
				old:  with(renewing, "renewalFailures", 1, "renewalGraceEndsAt", t0.Add(3*day)),
				new:  with(renewing, "renewalFailures", 2, "renewalGraceEndsAt", t0.Add(3*day)),
				fire: true},
			{name: "another retry fails within the grace period", op: "UPDATE", at: t0.Add(2 * day),
				old:  with(renewing, "renewalFailures", 2, "renewalGraceEndsAt", t0.Add(3*day)),
				new:  with(renewing, "renewalFailures", 3, "renewalGraceEndsAt", t0.Add(3*day)),
				fire: true},
			{name: "a failure without a grace period", op: "UPDATE", old: renewing, new: with(renewing, "renewalFailures", 1), fire: true},
			{name: "a failure reported after the grace period ended", op: "UPDATE", at: t0.Add(4 * day),
				old: with(renewing, "renewalFailures", 3, "renewalGraceEndsAt", t0.Add(3*day)),
				new: with(renewing, "renewalFailures", 4, "renewalGraceEndsAt", t0.Add(3*day))},
			{name: "the renewal succeeds and the count resets", op: "UPDATE",
				old: with(renewing, "renewalFailures", 3), new: with(renewing, "renewalFailures", 0, "renewedAt", t0)},
			{name: "another change while failing", op: "UPDATE",
				old: with(renewing, "renewalFailures", 2), new: with(renewing, "renewalFailures", 2, "name", "x")},
			{name: "a plan that does not auto-renew", op: "UPDATE", old: plan, new: with(plan, "renewalFailures", 1)},
			{name: "written by a producer still on Plan v1", op: "UPDATE", old: renewing, new: with(renewing, "name", "x"), writer: 1},
		}},
		{entry: "UnitAllowanceThreshold", params: map[string]any{"thresholdPercent": 20}, cases: []sample{
			{name: "the allowance falls below 20% of its total", op: "UPDATE", old: allowance(300), new: allowance(150), fire: true},
			{name: "it falls from exactly 20%", op: "UPDATE", old: allowance(200), new: allowance(199), fire: true},
			{name: "it was already below", op: "UPDATE", old: allowance(150), new: allowance(100)},
			{name: "it falls but stays above", op: "UPDATE", old: allowance(500), new: allowance(300)},
			{name: "a top-up takes it back above", op: "UPDATE", old: allowance(100), new: allowance(900)},
			{name: "after the top-up it falls below again", op: "UPDATE", old: allowance(900), new: allowance(100), fire: true},
			{name: "an allowance created low", op: "CREATE", new: allowance(100)},
		}},
		{entry: "NewPlanActivated", cases: []sample{
			{name: "a plan is provisioned active", op: "CREATE", new: plan, fire: true, fields: map[string]any{"planid": "plan-1"}},
			{name: "a pending plan becomes active", op: "UPDATE", old: with(plan, "status", "pending"), new: plan, fire: true, fields: map[string]any{"planid": "plan-1"}},
			{name: "a plan is provisioned pending", op: "CREATE", new: with(plan, "status", "pending")},
			{name: "a suspended plan is reactivated", op: "UPDATE", old: with(plan, "status", "suspended"), new: plan},
			{name: "an active plan changes", op: "UPDATE", old: plan, new: with(plan, "name", "x")},
		}},
	}
}
