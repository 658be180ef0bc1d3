package catalog_test

import "testing"

func TestTruphoneNotificationsFireAsTruphoneSays(t *testing.T) {
	loadBuiltin(t).run(t, truphoneCases())
}

func truphoneCases() []entryCases {
	const iccid = "893000000002391231"
	// The allowance's own id, its plan's id and the event's ids all
	// differ, so that a payload taking the wrong one shows.
	usage := func(used float64) map[string]any {
		return map[string]any{"id": "bal-1", "accountId": "acc-1", "unit": "MB", "kind": "allowance",
			"total": 1000.0, "used": used, "remaining": 1000 - used, "planId": "ZHNhc2Rhc2Q="}
	}
	bare := func(used float64) map[string]any { return with(usage(used), "kind", nil, "planId", nil) }
	ids := map[string]any{"iccid": iccid, "subscription_id": "ZHNhc2Rhc2Q="}
	sub := map[string]any{"id": "c3Vic2NyaXB0aW9u", "accountId": "acc-1", "name": "Europe 10GB", "status": "active"}
	subIDs := map[string]any{"iccid": iccid, "subscription_id": "c3Vic2NyaXB0aW9u"}

	return []entryCases{
		{entry: "USAGE_THRESHOLD", cases: []sample{
			{name: "usage reaches 80%", op: "UPDATE", deviceID: iccid, old: usage(700), new: usage(850),
				fire: true, fields: ids, truphone: ids, threshold: num(80)},
			{name: "usage lands on exactly 80%", op: "UPDATE", deviceID: iccid, old: usage(799), new: usage(800), edge: true,
				fire: true, fields: ids, truphone: ids, threshold: num(80)},
			{name: "an event without the SIM", op: "UPDATE", old: usage(700), new: usage(850),
				fire: true, fields: map[string]any{"iccid": nil, "subscription_id": "ZHNhc2Rhc2Q="}, threshold: num(80), renderErr: "iccid"},
			{name: "an allowance no plan granted", op: "UPDATE", deviceID: iccid, old: with(usage(700), "planId", nil), new: with(usage(850), "planId", nil),
				fire: true, fields: map[string]any{"iccid": iccid, "subscription_id": nil}, threshold: num(80), renderErr: "subscription_id"},
			{name: "usage stops just short of 80%", op: "UPDATE", deviceID: iccid, old: usage(700), new: usage(799.9), edge: true},
			{name: "usage was already past 80%", op: "UPDATE", deviceID: iccid, old: usage(850), new: usage(900),
				excludes: "usage already at or past the percentage"},
			{name: "usage stays below 80%", op: "UPDATE", deviceID: iccid, old: usage(100), new: usage(500)},
			{name: "a monetary balance is 80% spent", op: "UPDATE", deviceID: iccid,
				old: with(usage(700), "unit", "EUR", "kind", "monetary"), new: with(usage(850), "unit", "EUR", "kind", "monetary"),
				excludes: "monetary balances, and balances whose kind is not given"},
			{name: "a balance that does not say its kind", op: "UPDATE", old: bare(700), new: bare(850), sparse: true,
				excludes: "monetary balances, and balances whose kind is not given"},
			{name: "an allowance is created 85% used", op: "CREATE", deviceID: iccid, new: usage(850), unwatched: true, whenHolds: true},
		}},
		{entry: "USAGE_THRESHOLD", params: map[string]any{"thresholdPercent": 50}, cases: []sample{
			{name: "usage reaches 50%", op: "UPDATE", deviceID: iccid, old: usage(400), new: usage(600),
				fire: true, fields: ids, truphone: ids, threshold: num(50)},
			{name: "usage stays below 50%", op: "UPDATE", deviceID: iccid, old: usage(100), new: usage(400)},
		}},
		{entry: "SUBSCRIPTION_END", cases: []sample{
			{name: "the plan is used up", op: "UPDATE", deviceID: iccid, old: sub, new: with(sub, "status", "depleted"),
				fire: true, fields: subIDs, truphone: subIDs},
			{name: "the plan passes its expiry date", op: "UPDATE", deviceID: iccid, old: sub, new: with(sub, "status", "expired", "expiresAt", t0),
				fire: true, fields: subIDs, truphone: subIDs},
			{name: "a plan with only its required fields ends, no SIM on the event", op: "UPDATE", old: sub, new: with(sub, "status", "expired"),
				sparse: true, fire: true, fields: map[string]any{"iccid": nil, "subscription_id": "c3Vic2NyaXB0aW9u"}, renderErr: "iccid"},
			{name: "a used-up plan then expires", op: "UPDATE", deviceID: iccid, old: with(sub, "status", "depleted"), new: with(sub, "status", "expired"),
				excludes: "a plan that had already ended (depleted, then expired)"},
			{name: "the plan is cancelled", op: "UPDATE", deviceID: iccid, old: sub, new: with(sub, "status", "cancelled"), excludes: "a plan cancelled"},
			{name: "the plan is suspended", op: "UPDATE", deviceID: iccid, old: sub, new: with(sub, "status", "suspended")},
			{name: "an ended plan changes", op: "UPDATE", deviceID: iccid, old: with(sub, "status", "expired"), new: with(sub, "status", "expired", "name", "x")},
			{name: "a plan is created expired", op: "CREATE", deviceID: iccid, new: with(sub, "status", "expired"), unwatched: true, whenHolds: true},
		}},
	}
}
